"""SandboxConnector over real HTTP: reading one record and conditional updates.

A run decides whether it may overwrite a record from these two calls, so a
404 must read as "gone" (None), and a 412 must reach the caller as
``PreconditionFailed`` at once: never retried, never mistaken for a rejection.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from application.connector import EntryRejected, PreconditionFailed, Record
from tests.support.sandbox_side import SideDoor, connector, seeded_sandbox

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sandbox() -> Iterator[SideDoor]:
    with seeded_sandbox() as door:
        yield door


def version(record: Record) -> str:
    value = record.computed["lastUpdated"]
    assert isinstance(value, str)
    return value


async def test_read_returns_the_record_as_the_service_holds_it(sandbox: SideDoor) -> None:
    async with connector(sandbox.url) as c:
        assert c.version_field == "lastUpdated"
        seeded = await c.read("books", "b1")
        assert seeded is not None
        assert (seeded.id, seeded.field_data) == ("b1", {"title": "T", "author": "a1"})
        assert set(seeded.computed) == {"createdOn", "lastUpdated", "cdnUrl"}

        sandbox.edit("books", "b1", {"title": "Edited in the CMS"})
        edited = await c.read("books", "b1")
        created = await c.create("site1/menus", {"n": 1}, "k-menu")
        menu = await c.read("site1/menus", created.id)

    assert edited is not None and edited.field_data["title"] == "Edited in the CMS"
    assert version(edited) != version(seeded)
    assert menu == created


@pytest.mark.parametrize(("folder", "record_id"), [("books", "gone"), ("ghosts", "b1")])
async def test_read_of_a_missing_record_is_none(
    sandbox: SideDoor, folder: str, record_id: str
) -> None:
    async with connector(sandbox.url) as c:
        assert await c.read(folder, record_id) is None


async def test_read_retries_transient_failures(sandbox: SideDoor) -> None:
    sandbox.faults(fail_rate=0.5, seed=3)
    async with connector(sandbox.url, max_retries=10) as c:
        records = [await c.read("books", "b1") for _ in range(5)]
    assert all(r is not None and r.id == "b1" for r in records)
    assert sandbox.stats()["failed"] > 0


async def test_update_if_match_writes_while_the_version_holds(sandbox: SideDoor) -> None:
    async with connector(sandbox.url) as c:
        main = await c.read("books", "b1")
        assert main is not None
        first = await c.update("books", "b1", {"title": "One"}, "k1", if_match=version(main))
        second = await c.update("books", "b1", {"title": "Two"}, "k2", if_match=version(first))
    assert second.field_data["title"] == "Two"
    assert len({version(main), version(first), version(second)}) == 3
    assert sandbox.item("books", "b1")["lastUpdated"] == version(second)


async def test_update_if_match_after_an_upstream_edit_is_precondition_failed(
    sandbox: SideDoor,
) -> None:
    async with connector(sandbox.url, max_retries=5) as c:
        main = await c.read("books", "b1")
        assert main is not None
        colleague = sandbox.edit("books", "b1", {"title": "Colleague's"})
        with pytest.raises(PreconditionFailed) as refused:
            await c.update("books", "b1", {"title": "Mine"}, "k", if_match=version(main))
        unconditional = await c.update("books", "b1", {"author": None}, "k-other")

    assert not isinstance(refused.value, EntryRejected)
    assert refused.value.status == 412
    details = refused.value.details
    assert isinstance(details, dict)
    assert details["code"] == "precondition_failed"
    assert details["lastUpdated"] == colleague["lastUpdated"]
    stats = sandbox.stats()
    assert stats["requests_PATCH"] == 3  # the colleague, one refused attempt, the last update
    assert unconditional.field_data == {"title": "Colleague's", "author": None}


async def test_a_lost_answer_to_a_conditional_update_replays_instead_of_412(
    sandbox: SideDoor,
) -> None:
    """The retry carries the same key and ``If-Match``; the write it repeats
    already moved the version on, so only the replay keeps it from a 412."""
    sandbox.faults(lost_response_rate=0.5, seed=11)
    async with connector(sandbox.url, max_retries=10) as c:
        current = await c.read("books", "b1")
        assert current is not None
        for n in range(10):
            current = await c.update(
                "books", "b1", {"title": f"v{n}"}, f"k{n}", if_match=version(current)
            )
    stats = sandbox.stats()
    assert stats["updates"] == 10
    assert stats["duplicates"] == stats["lost_responses"] > 0
    assert sandbox.item("books", "b1")["lastUpdated"] == version(current)
