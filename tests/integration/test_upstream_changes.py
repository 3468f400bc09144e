"""A colleague's edit in the CMS is never overwritten without a word (API.md §4, Upstream changes).

Against the sandbox over HTTP: the colleague PATCHes the record in the service
after main last saw it; then alice publishes her draft.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from domain.entries import EntryStatus
from domain.plan import UpstreamPolicy
from infrastructure.postgres.database import Database
from tests.support.publishing import Harness, harness

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def lib(database: Database, schema: str) -> Iterator[Harness]:
    with harness(database, schema) as h:
        yield h


def colleague_edits(lib: Harness, record_id: str, **fields: str) -> None:
    lib.sandbox("PATCH", f"/collections/books/items/{record_id}", json={"fieldData": fields})


def test_an_upstream_edit_of_a_field_the_entry_writes_fails_the_entry(lib: Harness) -> None:
    ids = lib.setup_library()
    old = lib.main("books/old-man.json")
    assert old is not None
    lib.write("books/old-man.json", {**old, "title": "Old Man (revised)"})
    colleague_edits(lib, ids["oldman"], title="Old Man (colleague)")

    pipeline = lib.plan_and_run()

    assert pipeline.state == "completed_with_errors"
    entry = pipeline.entries["edit:books/old-man.json"]
    assert entry.status == EntryStatus.FAILED and entry.error_code == "changed_upstream"
    assert entry.error_details == [
        {
            "field": "title",
            "main": "Old Man",
            "upstream": "Old Man (colleague)",
            "draft": "Old Man (revised)",
        }
    ]
    # the colleague's edit stands, and alice's change waits in her draft
    assert lib.item_by("books", "slug", "old-man")["fieldData"]["title"] == "Old Man (colleague)"
    assert lib.queries.draft_changes("lib", "alice")["changes"] == [
        {"path": "books/old-man.json", "change": "modified"}
    ]
    status = lib.queries.pipeline_status(pipeline.pipeline_id)
    assert [(e["path"], e["code"]) for e in status["errors"]] == [
        ("books/old-man.json", "changed_upstream")
    ]


def test_an_upstream_edit_of_another_field_is_kept(lib: Harness) -> None:
    ids = lib.setup_library()
    old = lib.main("books/old-man.json")
    assert old is not None
    lib.write("books/old-man.json", {**old, "title": "Old Man (revised)"})
    colleague_edits(lib, ids["oldman"], slug="the-old-man")

    pipeline = lib.plan_and_run()

    assert pipeline.state == "completed", pipeline.counts()
    item = lib.item_by("books", "title", "Old Man (revised)")
    assert item["fieldData"]["slug"] == "the-old-man"
    on_main = lib.main("books/old-man.json")
    assert on_main is not None
    assert (on_main["title"], on_main["slug"]) == ("Old Man (revised)", "the-old-man")
    assert on_main["lastUpdated"] == item["lastUpdated"]


def test_overwrite_publishes_over_the_upstream_edit(lib: Harness) -> None:
    ids = lib.setup_library()
    old = lib.main("books/old-man.json")
    assert old is not None
    lib.write("books/old-man.json", {**old, "title": "Old Man (revised)"})
    colleague_edits(lib, ids["oldman"], title="Old Man (colleague)")

    planned = lib.app.plan("lib", "alice", on_upstream_change=UpstreamPolicy.OVERWRITE)
    lib.app.request_run(planned.pipeline_id)
    pipeline = lib.run(planned.pipeline_id)

    assert pipeline.state == "completed", pipeline.counts()
    assert lib.item_by("books", "slug", "old-man")["fieldData"]["title"] == "Old Man (revised)"
