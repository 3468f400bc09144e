"""Pull mirrors the sandbox into main: counts, exclusion, stale pages, shifted listings, targets.

A real PostgreSQL and a real sandbox over HTTP; the pull runs in a ``Worker``
as in ``publishd worker``. Where a test must act between a page's fetch and its
save it wraps the real connector (``Steered``), so the race lands every time.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from application.connector import Connector, Record, RecordPage
from application.worker import Worker
from domain.errors import PublishInProgress, PullInProgress, UnknownFolder
from domain.json_types import JsonObject
from domain.pull import Pull
from domain.workspace import MainChange, Workspace
from infrastructure.postgres.database import Database
from tests.support.publishing import Harness, harness

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def lib(database: Database, schema: str) -> Iterator[Harness]:
    with harness(database, schema) as h:
        yield h


class Steered(Connector):
    """The real connector, with its own page size and a hook after each page is listed."""

    def __init__(
        self, inner: Connector, page_size: int, after_list: Callable[[str, int], None]
    ) -> None:
        self.inner = inner
        self.list_page_size = page_size
        self.after_list = after_list

    async def create(self, folder: str, fields: JsonObject, idempotency_key: str) -> Record:
        return await self.inner.create(folder, fields, idempotency_key)

    async def update(
        self,
        folder: str,
        record_id: str,
        fields: JsonObject,
        idempotency_key: str,
        *,
        if_match: str | None = None,
    ) -> Record:
        return await self.inner.update(
            folder, record_id, fields, idempotency_key, if_match=if_match
        )

    async def delete_many(
        self, folder: str, record_ids: Sequence[str], idempotency_key: str
    ) -> None:
        await self.inner.delete_many(folder, record_ids, idempotency_key)

    async def list_page(self, folder: str, offset: int, limit: int) -> RecordPage:
        page = await self.inner.list_page(folder, offset, limit)
        await asyncio.to_thread(self.after_list, folder, offset)
        return page

    async def read(self, folder: str, record_id: str) -> Record | None:
        return await self.inner.read(folder, record_id)


def run_pull(
    lib: Harness,
    pull_id: str,
    *,
    page_size: int = 100,
    after_list: Callable[[str, int], None] = lambda folder, offset: None,
) -> Pull:
    def connector_for(workspace: Workspace) -> Connector:
        return Steered(lib.runtime.connector_for(workspace), page_size, after_list)

    worker = Worker(
        lib.app,
        connector_for,
        clock=lambda: datetime.now(UTC),
        lease=timedelta(seconds=15),
        concurrency=4,
    )

    async def go() -> Pull | None:
        try:
            return await worker.run_pull(pull_id)
        finally:
            await lib.runtime.aclose_connectors()

    done = asyncio.run(go())
    assert done is not None
    return done


def pull(lib: Harness, **scope: Any) -> Pull:
    return run_pull(lib, lib.app.start_pull("lib", **scope).pull_id)


def test_a_first_pull_names_files_by_slug_and_indexes_ids_and_references(lib: Harness) -> None:
    ids = lib.setup_library()  # ends with a pull

    pull = lib.app.pull(lib.pull().pull_id)  # a second, idle pull
    assert pull.state == "completed"
    assert pull.counts == {"created": 0, "updated": 0, "unchanged": 6, "deleted": 0}
    book = lib.main("books/old-man.json")
    assert book is not None
    assert book["id"] == ids["oldman"] and book["author"] == ids["hemingway"]
    assert {"createdOn", "lastUpdated", "cdnUrl"} <= book.keys()
    row = lib.runtime.views.file_index_by_record("lib", "authors", ids["woolf"])
    assert row is not None and row["filename"] == "woolf.json" and row["last_seen_at"]
    refs = lib.runtime.views.references("lib", "authors", "woolf.json", None)
    assert sorted(r["source_path"] for r in refs) == [
        "books/dalloway.json",
        "books/lighthouse.json",
    ]
    assert all(r["target_record_id"] == ids["woolf"] for r in refs)


def test_a_pull_counts_created_updated_unchanged_and_deleted(lib: Harness) -> None:
    ids = lib.setup_library()
    before = lib.runtime.views.file_index_by_record("lib", "books", ids["lighthouse"])
    assert before is not None
    lib.sandbox(
        "PATCH",
        f"/collections/books/items/{ids['oldman']}",
        json={"fieldData": {"title": "Old Man, upstream"}},
    )
    lib.create_item("books", {"title": "Upstream", "slug": "old-man"})  # the slug is taken
    lib.sandbox(
        "PATCH",
        f"/collections/menus/items/{lib.item_by('menus', 'slug', 'main')['id']}",
        json={"fieldData": {"items": [ids["oldman"]]}},
    )
    lib.sandbox("DELETE", "/collections/books/items", json={"items": [ids["dalloway"]]})

    pull = lib.app.pull(lib.pull().pull_id)

    assert pull.counts == {"created": 1, "updated": 2, "unchanged": 3, "deleted": 1}
    assert lib.main("books/old-man.json")["title"] == "Old Man, upstream"  # type: ignore[index]
    assert lib.main("books/old-man-2.json")["title"] == "Upstream"  # type: ignore[index]
    assert lib.main("books/dalloway.json") is None
    assert lib.runtime.views.file_index_by_record("lib", "books", ids["dalloway"]) is None
    after = lib.runtime.views.file_index_by_record("lib", "books", ids["lighthouse"])
    assert after is not None and after["last_seen_at"] > before["last_seen_at"]
    assert lib.runtime.views.references("lib", "books", "dalloway.json", None) == []


def test_a_pull_of_chosen_folders_and_the_refusals(lib: Harness) -> None:
    lib.setup_library()
    lib.create_item("authors", {"name": "New", "slug": "new"})
    lib.create_item("books", {"title": "New", "slug": "new"})
    with pytest.raises(UnknownFolder):
        lib.app.start_pull("lib", ["nope"])
    done = pull(lib, folders=["authors"])
    assert done.folders == ["authors"] and done.counts["created"] == 1
    assert lib.main("authors/new.json") is not None and lib.main("books/new.json") is None


def test_two_pulls_started_at_once_one_is_refused(lib: Harness) -> None:
    lib.setup_library()
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def start() -> None:
        barrier.wait(10)
        try:
            outcomes.append(lib.app.start_pull("lib", None))
        except PullInProgress as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    started = [o for o in outcomes if isinstance(o, Pull)]
    refused = [o for o in outcomes if isinstance(o, PullInProgress)]
    assert len(started) == 1 and len(refused) == 1
    assert refused[0].details == {"pull_id": started[0].pull_id}
    assert lib.app.workspace("lib").pulling == started[0].pull_id
    run_pull(lib, started[0].pull_id)
    assert lib.app.workspace("lib").pulling is None


def test_no_pull_during_a_run_and_no_run_during_a_pull(lib: Harness) -> None:
    lib.setup_library()
    lib.write("authors/x.json", {"name": "X", "slug": "x"})
    running = lib.app.plan("lib", "alice")
    lib.app.request_run(running.pipeline_id)
    with pytest.raises(PublishInProgress):
        lib.app.start_pull("lib", None)
    lib.run(running.pipeline_id)

    started = lib.app.start_pull("lib", None)
    lib.write("authors/y.json", {"name": "Y", "slug": "y"})
    waiting = lib.app.plan("lib", "alice")
    with pytest.raises(PullInProgress) as refused:
        lib.app.request_run(waiting.pipeline_id)
    assert refused.value.details == {"pull_id": started.pull_id}
    with pytest.raises(PullInProgress):
        lib.app.publish("lib", "alice")
    run_pull(lib, started.pull_id)
    assert lib.app.request_run(waiting.pipeline_id).state == "running"


def test_a_main_write_between_a_pages_fetch_and_its_save_is_left_as_is(lib: Harness) -> None:
    ids = lib.setup_library()
    for book in ("oldman", "lighthouse"):
        lib.sandbox(
            "PATCH",
            f"/collections/books/items/{ids[book]}",
            json={"fieldData": {"title": f"{book}, upstream"}},
        )
    published = {**(lib.main("books/old-man.json") or {}), "title": "Old Man, published"}

    def publish_meanwhile(folder: str, offset: int) -> None:
        if folder == "books":  # fetched, not yet saved: main moves under the page
            workspace = lib.app.workspace("lib")
            workspace.change_main(
                "pipeline:other", [MainChange("books/old-man.json", published, ids["oldman"])]
            )
            lib.app.save_all(workspace)

    done = run_pull(lib, lib.app.start_pull("lib", ["books"]).pull_id, after_list=publish_meanwhile)

    assert lib.main("books/old-man.json") == published
    assert lib.main("books/lighthouse.json")["title"] == "lighthouse, upstream"  # type: ignore[index]
    assert done.counts == {"created": 0, "updated": 1, "unchanged": 2, "deleted": 0}


def test_a_listing_shifted_by_an_upstream_delete_costs_no_live_record(lib: Harness) -> None:
    lib.setup_library()  # the menu lists all three books: the fault will not delete them
    extra = {
        n: lib.create_item("books", {"title": f"Extra {n}", "slug": f"extra-{n}"})
        for n in (1, 2, 3, 4)
    }
    pull(lib, folders=["books"])
    assert lib.main("books/extra-2.json") is not None
    # pages of 2: [old-man, lighthouse] [dalloway, extra-1] -> extra-1 deleted, extra-2 shifts
    # onto page 1, and the page at offset 4 starts at extra-3
    lib.set_faults(delete_during_listing={"collection": "books", "after_offset": 4})

    done = run_pull(lib, lib.app.start_pull("lib", ["books"]).pull_id, page_size=2)

    stats = lib.sandbox("GET", "/_admin/stats")
    assert stats.get("deleted_during_listing") == 1
    assert [i["id"] for i in lib.items("books") if i["id"] == extra[1]] == []
    assert lib.main("books/extra-2.json") is not None  # never listed, still live: kept
    assert lib.main("books/extra-1.json") is not None  # listed before it went: next pull
    assert done.counts == {"created": 0, "updated": 0, "unchanged": 7, "deleted": 0}
    again = pull(lib, folders=["books"])
    assert again.counts == {"created": 0, "updated": 0, "unchanged": 6, "deleted": 1}
    assert lib.main("books/extra-1.json") is None


def test_targeted_pulls_by_records_and_by_paths(lib: Harness) -> None:
    ids = lib.setup_library()
    lib.sandbox(
        "PATCH",
        f"/collections/books/items/{ids['oldman']}",
        json={"fieldData": {"title": "Old Man, upstream"}},
    )
    lib.sandbox(
        "PATCH",
        f"/collections/books/items/{ids['lighthouse']}",
        json={"fieldData": {"title": "Lighthouse, upstream"}},
    )
    lib.sandbox(
        "PATCH",
        f"/collections/menus/items/{lib.item_by('menus', 'slug', 'main')['id']}",
        json={"fieldData": {"items": [ids["oldman"]]}},
    )
    lib.sandbox("DELETE", "/collections/books/items", json={"items": [ids["dalloway"]]})
    new = lib.create_item("books", {"title": "New", "slug": "new"})
    before = lib.app.workspace("lib").version

    by_records = pull(
        lib, records=[("books", ids["oldman"]), ("books", ids["dalloway"]), ("books", new)]
    )

    assert by_records.counts == {"created": 1, "updated": 1, "unchanged": 0, "deleted": 1}
    assert lib.main("books/old-man.json")["title"] == "Old Man, upstream"  # type: ignore[index]
    assert lib.main("books/dalloway.json") is None
    assert lib.main("books/new.json")["id"] == new  # type: ignore[index]
    assert lib.main("books/lighthouse.json")["title"] == "Lighthouse"  # type: ignore[index]
    written = [
        type(e).__name__
        for e in lib.app.events.get(lib.app.workspace("lib").id, gt=before)
        if type(e).__name__ == "MainChanged"
    ]
    assert written == ["MainChanged"]  # every named record in one transaction

    by_paths = pull(lib, paths=["books/lighthouse.json", "authors/woolf.json"])
    assert by_paths.records == [("books", ids["lighthouse"]), ("authors", ids["woolf"])]
    assert by_paths.counts == {"created": 0, "updated": 1, "unchanged": 1, "deleted": 0}
    assert lib.main("books/lighthouse.json")["title"] == "Lighthouse, upstream"  # type: ignore[index]
