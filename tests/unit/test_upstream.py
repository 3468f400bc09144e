"""Upstream change detection (application.upstream) on the in-memory connector.

The fake versions every write (``lastUpdated``) and refuses a stale
``if_match``; ``seed`` stands for a colleague's edit made in the service.
"""

from __future__ import annotations

import asyncio

import pytest

from application.connector import EntryRejected
from application.records import record_to_file
from application.upstream import ChangedUpstream, guarded_update
from domain.schema import FolderSchema
from tests.support.connectors import CheckingConnector
from tests.support.library import memory_app

BOOKS = FolderSchema("books")


def service_with_a_book() -> tuple[CheckingConnector, dict[str, object]]:
    connector = CheckingConnector(memory_app())
    connector.seed("books", "b1", {"title": "Old Man", "slug": "old-man"})
    record = connector.records["books"]["b1"]
    return connector, record_to_file(record, BOOKS)  # main's copy, as a pull saw it


def update(connector: CheckingConnector, main: dict[str, object], **fields: str) -> object:
    return asyncio.run(
        guarded_update(connector, "books", "b1", fields, "key-1", main=main, draft=dict(fields))
    )


def test_an_unchanged_record_is_written_in_one_conditional_call() -> None:
    connector, main = service_with_a_book()
    record = update(connector, main, title="Old Man (revised)")
    assert connector.records["books"]["b1"] == record
    assert connector.calls == ["key-1"]


def test_a_change_upstream_in_a_written_field_refuses_the_write() -> None:
    connector, main = service_with_a_book()
    connector.seed("books", "b1", {"title": "Old Man (colleague)", "slug": "old-man"})
    with pytest.raises(ChangedUpstream) as refused:
        update(connector, main, title="Old Man (revised)")
    assert refused.value.code == "changed_upstream"
    assert refused.value.details == [
        {
            "field": "title",
            "main": "Old Man",
            "upstream": "Old Man (colleague)",
            "draft": "Old Man (revised)",
        }
    ]
    assert connector.records["books"]["b1"].field_data["title"] == "Old Man (colleague)"


def test_a_change_upstream_in_another_field_is_kept() -> None:
    connector, main = service_with_a_book()
    connector.seed("books", "b1", {"title": "Old Man", "slug": "the-old-man"})
    record = update(connector, main, title="Old Man (revised)")
    assert record.field_data == {"title": "Old Man (revised)", "slug": "the-old-man"}  # type: ignore[attr-defined]


def test_upstream_already_holding_the_value_sent_is_no_conflict() -> None:
    """A resumed call whose first attempt went through finds its own write upstream."""
    connector, main = service_with_a_book()
    connector.seed("books", "b1", {"title": "Old Man (revised)", "slug": "old-man"})
    update(connector, main, title="Old Man (revised)")
    assert connector.records["books"]["b1"].field_data["title"] == "Old Man (revised)"


def test_without_conditional_writes_the_record_is_read_first() -> None:
    connector, main = service_with_a_book()
    connector.version_field = None
    connector.seed("books", "b1", {"title": "Old Man (colleague)", "slug": "old-man"})
    with pytest.raises(ChangedUpstream):
        update(connector, main, title="Old Man (revised)")
    connector.seed("books", "b1", {"title": "Old Man", "slug": "the-old-man"})
    update(connector, main, title="Old Man (revised)")
    assert connector.records["books"]["b1"].field_data["slug"] == "the-old-man"


def test_a_record_deleted_upstream_is_rejected() -> None:
    connector, main = service_with_a_book()
    connector.version_field = None
    del connector.records["books"]["b1"]
    with pytest.raises(EntryRejected, match="no longer exists"):
        update(connector, main, title="Old Man (revised)")
