"""Pulls as leased jobs on the in-memory event store: exclusive, resumable, never stale.

Every part is the product's (commands, worker, pull run, the pure projections
behind ``MemoryViews``) except the content service, a ``CheckingConnector``
whose listing a test may steer (``ListingHooks``). What the tests assert is
what a client sees: main's files, the pull's counts, the refusals.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError

from application.connector import Connector, RecordPage
from application.worker import Worker
from domain.errors import PublishInProgress, PullInProgress
from domain.pull import Pull
from domain.workspace import MainChange, Workspace
from tests.support.connectors import CheckingConnector
from tests.support.library import LEASE, WORKSPACE, Library, memory_app


class SteeredConnector(CheckingConnector):
    """The fake service, with a hook after each listing page is served (before it is saved)."""

    list_page_size = 2

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.after_list: Callable[[str, int], None] = lambda folder, offset: None
        self.pages: list[tuple[str, int]] = []

    async def list_page(self, folder: str, offset: int, limit: int) -> RecordPage:
        page = await super().list_page(folder, offset, limit)
        self.pages.append((folder, offset))
        self.after_list(folder, offset)
        return page


class Killed(BaseException):
    """Stands for SIGKILL: nothing of the pull's own handling runs."""


@pytest.fixture
def library() -> Iterator[Library]:
    library = Library(memory_app())
    library.connector = SteeredConnector(library.app)
    library.setup()
    for n in range(3, 8):  # five more books: four pages of two in all
        library.connector.seed("books", f"b{n}", {"title": f"Book {n}", "slug": f"book-{n}"})
    library.pull()
    yield library


def connector(library: Library) -> SteeredConnector:
    found = library.connector
    assert isinstance(found, SteeredConnector)
    return found


def main(library: Library, folder: str) -> dict[str, Any]:
    index = library.app.views.main_folder_index(WORKSPACE, folder)
    return {filename: content for filename, content in index.values()}


def worker(library: Library, name: str, now: datetime | None = None) -> Worker:
    def connector_for(_: Workspace) -> Connector:
        return library.connector

    return Worker(
        library.app,
        connector_for,
        clock=lambda: now or datetime.now(UTC),
        lease=LEASE,
        concurrency=4,
        name=name,
    )


def pull(library: Library, **scope: Any) -> Pull:
    started = library.app.start_pull(WORKSPACE, **scope)
    done = asyncio.run(worker(library, "w").run_pull(started.pull_id))
    assert done is not None
    return done


def write_main(library: Library, source: str, *changes: MainChange) -> None:
    """Another writer (a publish, a refresh) changes main."""
    workspace = library.app.workspace(WORKSPACE)
    workspace.change_main(source, list(changes))
    library.app.save_all(workspace)


def test_a_main_write_between_a_pages_fetch_and_its_save_is_not_overwritten(
    library: Library,
) -> None:
    service = connector(library)
    service.seed("books", "b1", {"title": "Old Man, upstream", "slug": "old-man", "author": "a1"})
    service.seed("books", "b3", {"title": "Book 3, upstream", "slug": "book-3"})
    published = {"id": "b1", "title": "Old Man, published", "slug": "old-man", "author": "a1"}

    def publish_meanwhile(folder: str, offset: int) -> None:
        if (folder, offset) == ("books", 0):  # the page holding b1 is fetched, not yet saved
            write_main(library, "pipeline:p", MainChange("books/old-man.json", published, "b1"))

    service.after_list = publish_meanwhile
    done = pull(library, folders=["books"])

    library.app.catch_up()
    assert main(library, "books")["old-man.json"] == published
    assert main(library, "books")["book-3.json"]["title"] == "Book 3, upstream"  # not touched
    assert done.counts == {"created": 0, "updated": 1, "unchanged": 6, "deleted": 0}


def test_a_main_write_racing_the_save_makes_the_save_look_again(library: Library) -> None:
    service = connector(library)
    service.seed("books", "b2", {"title": "Dalloway, upstream", "slug": "dalloway", "author": "a2"})
    published = {"id": "b2", "title": "Dalloway, published", "slug": "dalloway", "author": "a2"}
    app, save_all = library.app, library.app.save_all
    raced: list[bool] = []

    def save_racing(*aggregates: Any) -> int:
        pending = [type(e).__name__ for a in aggregates if a is not None for e in a.pending_events]
        if "MainChanged" in pending and not raced:  # the page decided; main moves before it saves
            raced.append(True)
            other = app.workspace(WORKSPACE)  # a separate copy: the page's stays at its version
            other.change_main("pipeline:p", [MainChange("books/dalloway.json", published, "b2")])
            save_all(other)
        return save_all(*aggregates)

    app.save_all = save_racing  # type: ignore[method-assign]
    pull(library, folders=["books"])

    app.catch_up()
    assert raced == [True]
    assert main(library, "books")["dalloway.json"] == published


def test_a_listing_shifted_by_an_upstream_delete_removes_nothing_live(library: Library) -> None:
    service = connector(library)
    before = set(main(library, "books"))
    assert len(before) == 7

    def delete_upstream(folder: str, offset: int) -> None:
        if (folder, offset) == ("books", 2):  # b3, b4 listed; b4 goes: b5 moves onto page 2
            service.records["books"].pop("b4", None)

    service.after_list = delete_upstream
    done = pull(library, folders=["books"])

    library.app.catch_up()
    assert set(main(library, "books")) == before  # b5, never listed, is still there
    assert done.counts == {"created": 0, "updated": 0, "unchanged": 7, "deleted": 0}
    again = pull(library, folders=["books"])  # the next pull sees b4 gone, and proves it
    assert again.counts == {"created": 0, "updated": 0, "unchanged": 6, "deleted": 1}
    assert "book-4.json" not in main(library, "books")


def test_a_record_gone_upstream_is_removed_only_once_a_read_confirms_it(library: Library) -> None:
    service = connector(library)
    service.records["books"].pop("b7")
    reads: list[str] = []
    read = service.read

    async def counted_read(folder: str, record_id: str) -> Any:
        reads.append(record_id)
        return await read(folder, record_id)

    service.read = counted_read  # type: ignore[method-assign]
    done = pull(library, folders=["books"])
    library.app.catch_up()
    assert reads == ["b7"]
    assert done.counts["deleted"] == 1 and "book-7.json" not in main(library, "books")


def test_a_targeted_pull_by_records_writes_all_in_one_save(library: Library) -> None:
    service = connector(library)
    service.seed("books", "b1", {"title": "Old Man, upstream", "slug": "old-man", "author": "a1"})
    service.seed("books", "b9", {"title": "New", "slug": "book-3"})  # its slug's file is taken
    service.records["books"].pop("b2")
    version = library.app.workspace(WORKSPACE).version

    done = pull(
        library,
        records=[("books", "b1"), ("books", "b2"), ("books", "b9"), ("authors", "a1")],
    )

    library.app.catch_up()
    books = main(library, "books")
    assert done.scope == {
        "records": [
            {"folder": "books", "record_id": "b1"},
            {"folder": "books", "record_id": "b2"},
            {"folder": "books", "record_id": "b9"},
            {"folder": "authors", "record_id": "a1"},
        ]
    }
    assert done.counts == {"created": 1, "updated": 1, "unchanged": 1, "deleted": 1}
    assert books["old-man.json"]["title"] == "Old Man, upstream"
    assert "dalloway.json" not in books
    assert books["book-3-2.json"]["id"] == "b9"
    assert books["book-4.json"]["title"] == "Book 4"  # not named: not read
    workspace = library.app.workspace(WORKSPACE)
    main_changes = [
        e
        for e in library.app.events.get(workspace.id, gt=version)
        if type(e).__name__ == "MainChanged"
    ]
    assert len(main_changes) == 1  # one transaction


def test_a_targeted_pull_by_paths_reads_the_files_records(library: Library) -> None:
    service = connector(library)
    service.seed("authors", "a2", {"name": "Virginia Woolf", "slug": "woolf"})
    service.records["books"].pop("b3")

    done = pull(library, paths=["authors/woolf.json", "books/book-3.json"])

    library.app.catch_up()
    assert done.records == [("authors", "a2"), ("books", "b3")]
    assert done.counts == {"created": 0, "updated": 1, "unchanged": 0, "deleted": 1}
    assert main(library, "authors")["woolf.json"]["name"] == "Virginia Woolf"
    assert "book-3.json" not in main(library, "books")


def test_one_pull_at_a_time_and_never_during_a_run(library: Library) -> None:
    app = library.app
    first = app.start_pull(WORKSPACE, ["books"])
    with pytest.raises(PullInProgress) as refused:
        app.start_pull(WORKSPACE, ["authors"])
    assert refused.value.details == {"pull_id": first.pull_id}
    library.write("books/old-man.json", {"id": "b1", "title": "T", "slug": "old-man"})
    pipeline = library.plan()
    with pytest.raises(PullInProgress):
        app.request_run(pipeline.pipeline_id)
    with pytest.raises(PullInProgress):
        app.publish(WORKSPACE, "alice")
    asyncio.run(worker(library, "w").run_pull(first.pull_id))

    app.request_run(pipeline.pipeline_id)  # the pull ended: its lock went with it
    with pytest.raises(PublishInProgress):
        app.start_pull(WORKSPACE, None)


def test_a_pull_whose_worker_died_is_resumed_after_the_lease_and_counts_once(
    library: Library,
) -> None:
    service = connector(library)
    for n in range(3, 8):
        service.seed("books", f"b{n}", {"title": f"Book {n}, upstream", "slug": f"book-{n}"})
    service.seed("books", "b10", {"title": "New", "slug": "new"})
    started = library.app.start_pull(WORKSPACE, ["authors", "books"])
    now = datetime.now(UTC)

    def die(folder: str, offset: int) -> None:
        if (folder, offset) == ("books", 4):
            raise Killed

    service.after_list = die
    with pytest.raises(Killed):
        asyncio.run(worker(library, "doomed", now).run_pull(started.pull_id))
    halfway = library.app.pull(started.pull_id)
    assert halfway.state == "running" and halfway.lease_owner == "doomed"
    assert asyncio.run(worker(library, "early", now).run_pull(started.pull_id)) is None

    service.after_list = lambda folder, offset: None
    service.pages.clear()
    later = now + LEASE + timedelta(seconds=1)
    done = asyncio.run(worker(library, "resumer", later).run_pull(started.pull_id))

    assert done is not None and done.state == "completed"
    assert service.pages == [("books", 4), ("books", 6)]  # from the page it had not recorded
    assert done.counts == {"created": 1, "updated": 5, "unchanged": 4, "deleted": 0}
    library.app.catch_up()
    books = main(library, "books")
    assert sorted(c["id"] for c in books.values()) == sorted(["b1", "b2", *_b(3, 8), "b10"])
    assert library.app.workspace(WORKSPACE).pulling is None


def test_a_worker_that_lost_its_lease_records_nothing(library: Library) -> None:
    started = library.app.start_pull(WORKSPACE, ["books"])
    now = datetime.now(UTC)
    asleep = worker(library, "asleep", now)
    claimed = asleep.claim_pull(started.pull_id)
    assert claimed is not None
    taker = worker(library, "taker", now + LEASE + timedelta(seconds=1))
    assert taker.claim_pull(started.pull_id) is not None

    claimed.record_page("asleep", "books", 0, {"unchanged": 2}, offset=0, listed=[], done=True)
    with pytest.raises(IntegrityError):
        library.app.save_all(claimed)
    assert library.app.pull(started.pull_id).folder_progress("books").pages == 0


def _b(start: int, stop: int) -> list[str]:
    return [f"b{n}" for n in range(start, stop)]


def test_a_service_that_omits_empty_fields_makes_no_phantom_update() -> None:
    from application.connector import Record
    from application.pull_diff import FolderMirror
    from domain.schema import FolderSchema

    schema = FolderSchema("books")
    main = {"id": "rec1", "title": "T", "subtitle": "", "tags": [], "done": False, "count": 0}
    pulled = Record("rec1", {"title": "T", "count": 0})  # Airtable leaves the empties out
    omitting = FolderMirror("books", schema, {"rec1": ("t.json", main)}, empty_is_absent=True)
    assert omitting.diff([pulled]).counts["updated"] == 0
    strict = FolderMirror("books", schema, {"rec1": ("t.json", main)})
    assert strict.diff([pulled]).counts["updated"] == 1
    zero_lost = Record("rec1", {"title": "T"})  # 0 is a value, not an empty one
    assert omitting.diff([zero_lost]).counts["updated"] == 1
