"""The read port's contract, run against the in-memory views and the PostgreSQL views.

The same commands of the real application (workspace, schemas, pulls, draft
writes, plan, run, cancel, retry) feed both: on memory, the POPO event store
and ``MemoryViews``; on PostgreSQL, the real recorder with the real projection
runner in a thread and ``PostgresViews``, read after waiting on the tracking
position. Every case asserts the very same answers of both, so the memory views
answer exactly what the PostgreSQL views answer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from application.app import PublishdApplication
from application.projections import PROJECTION_NAMES
from application.projections.memory.projector import projected_events
from application.views import Views
from domain.errors import StalePlan
from domain.pull import Pull
from infrastructure.postgres.database import Database
from infrastructure.postgres.projections.runner import run_projections
from infrastructure.postgres.projections.views import PostgresViews
from tests.support.library import USER, WORKSPACE, Library, memory_app

OLD_MAN = {"id": "b1", "title": "Old Man", "slug": "old-man", "author": "a1"}
DALLOWAY = {"id": "b2", "title": "Dalloway", "slug": "dalloway", "author": "a2"}
RECORD = {"folder": "books", "record_id": "b1"}


@pytest.fixture(params=["memory", "postgres"])
def library(request: pytest.FixtureRequest) -> Iterator[Library]:
    if request.param == "memory":
        library = Library(memory_app())
        library.setup()
        yield library
        return
    database: Database = request.getfixturevalue("database")
    schema: str = request.getfixturevalue("schema")
    views = PostgresViews(database, schema)
    app = PublishdApplication(database.eventsourcing_env(schema, pool_size=4), views=views)
    stop = threading.Event()
    runner = threading.Thread(target=run_projections, args=(database, schema, stop), daemon=True)
    runner.start()
    try:
        library = Library(app)
        library.setup()
        yield library
    finally:
        stop.set()
        runner.join(timeout=10)
        views.close()
        app.close()


def read(library: Library) -> Views:
    """The views, once they have applied every event saved so far."""
    library.app.catch_up()
    return library.app.views


def ref(branch: str, source: str, filename: str | None, record_id: str | None) -> dict[str, Any]:
    return {
        "branch": branch,
        "source_path": source,
        "target_folder": "authors",
        "target_filename": filename,
        "target_record_id": record_id,
    }


class TestViewsContract:
    def test_main_contents_paths_and_folder_index(self, library: Library) -> None:
        views = read(library)
        # as pulled: the record's fields plus its server-computed version
        books = library.connector.records["books"]
        old_man, dalloway = ({**c, **books[str(c["id"])].computed} for c in (OLD_MAN, DALLOWAY))
        wanted = ["books/old-man.json", "books/dalloway.json", "books/nope.json"]
        assert views.main_contents(WORKSPACE, wanted) == {
            "books/old-man.json": old_man,
            "books/dalloway.json": dalloway,
        }
        assert views.main_contents(WORKSPACE, []) == {}
        assert views.main_contents("elsewhere", wanted) == {}
        assert views.main_file(WORKSPACE, "books/old-man.json") == old_man
        assert views.main_file(WORKSPACE, "books/nope.json") is None
        assert views.main_paths_exist(WORKSPACE, wanted) == {
            "books/old-man.json",
            "books/dalloway.json",
        }
        assert views.main_folder_index(WORKSPACE, "books") == {
            "b1": ("old-man.json", old_man),
            "b2": ("dalloway.json", dalloway),
        }
        assert views.main_folder_index(WORKSPACE, "menus") == {}

        library.connector.records["books"].pop("b2")  # deleted upstream
        library.pull()
        views = read(library)
        assert views.main_paths_exist(WORKSPACE, wanted) == {"books/old-man.json"}
        assert set(views.main_folder_index(WORKSPACE, "books")) == {"b1"}

    def test_draft_files(self, library: Library) -> None:
        library.write("books/war.json", {"title": "War"})
        library.write("books/war.json", {"title": "War and Peace"})
        library.delete("books/dalloway.json")
        library.write("authors/tolstoy.json", {"name": "Tolstoy"}, user="bob")
        views = read(library)
        assert views.draft_file(WORKSPACE, USER, "books/war.json") == (
            True,
            {"title": "War and Peace"},
        )
        assert views.draft_file(WORKSPACE, USER, "books/dalloway.json") == (True, None)
        assert views.draft_file(WORKSPACE, USER, "books/old-man.json") == (False, None)
        assert views.draft_file(WORKSPACE, "carol", "books/war.json") == (False, None)
        assert views.draft_files(WORKSPACE, USER) == {
            "books/war.json": {"title": "War and Peace"},
            "books/dalloway.json": None,
        }
        assert views.draft_files(WORKSPACE, "bob") == {"authors/tolstoy.json": {"name": "Tolstoy"}}

        library.app.discard_draft(WORKSPACE, USER)
        views = read(library)
        assert views.draft_files(WORKSPACE, USER) == {}
        assert views.draft_file(WORKSPACE, USER, "books/war.json") == (False, None)
        assert views.draft_files(WORKSPACE, "bob") == {"authors/tolstoy.json": {"name": "Tolstoy"}}

    def test_record_ids_and_file_index(self, library: Library) -> None:
        views = read(library)
        files = [("books", "old-man.json"), ("authors", "woolf.json"), ("books", "nope.json")]
        assert views.record_ids(WORKSPACE, files) == {
            ("books", "old-man.json"): "b1",
            ("authors", "woolf.json"): "a2",
        }
        assert views.record_ids(WORKSPACE, []) == {}
        assert views.record_ids("elsewhere", files) == {}
        first = views.file_index_by_record(WORKSPACE, "books", "b1")
        assert first is not None
        assert first == {
            "folder": "books",
            "record_id": "b1",
            "filename": "old-man.json",
            "last_seen_at": first["last_seen_at"],
        }
        assert views.file_index_by_filename(WORKSPACE, "books", "old-man.json") == first
        assert views.file_index_by_record(WORKSPACE, "books", "a1") is None
        assert views.file_index_by_filename(WORKSPACE, "authors", "old-man.json") is None

        library.pull()  # nothing changed upstream: every record is seen again
        notifications = library.app.recorder.select_notifications(1, 100_000)
        [*_, seen] = (
            e
            for e in projected_events(notifications)
            if e.name == "RecordsSeen" and e.data["folder"] == "books"
        )
        seen_at = seen.timestamp
        views = read(library)
        again = views.file_index_by_record(WORKSPACE, "books", "b1")
        assert again == {**first, "last_seen_at": seen_at}
        assert datetime.fromisoformat(seen_at) > datetime.fromisoformat(first["last_seen_at"])
        assert views.file_index_by_filename(WORKSPACE, "books", "old-man.json") == again

    def test_inbound_references_and_references(self, library: Library) -> None:
        library.write("books/war.json", {"title": "War", "author": "@/authors/hemingway.json"})
        library.write("books/anna.json", {"title": "Anna", "author": "@/authors/tolstoy.json"})
        views = read(library)
        # main holds a resolved id (a schema field), the draft an @-reference: each
        # row gets its other target column from FileIndex
        assert views.references(WORKSPACE, "authors", "hemingway.json") == [
            ref("draft:alice", "books/war.json", "hemingway.json", "a1"),
            ref("main", "books/old-man.json", "hemingway.json", "a1"),
        ]
        assert views.references(WORKSPACE, "authors", target_record_id="a1") == [
            ref("draft:alice", "books/war.json", "hemingway.json", "a1"),
            ref("main", "books/old-man.json", "hemingway.json", "a1"),
        ]
        assert views.references(WORKSPACE, "authors", "tolstoy.json") == [
            ref("draft:alice", "books/anna.json", "tolstoy.json", None)
        ]
        assert views.references(WORKSPACE, "authors") == []
        assert views.references(WORKSPACE, "books", "hemingway.json") == []

        hemingway = ("authors", "hemingway.json", "a1")
        assert views.inbound_references(WORKSPACE, [hemingway], ["main"]) == ["books/old-man.json"]
        assert views.inbound_references(WORKSPACE, [hemingway], ["main", "draft:alice"]) == [
            "books/old-man.json",
            "books/war.json",
        ]
        by_filename = ("authors", "hemingway.json", None)
        assert views.inbound_references(WORKSPACE, [by_filename], ["main", "draft:alice"]) == [
            "books/old-man.json",
            "books/war.json",
        ]
        by_record_id = ("authors", "unknown.json", "a2")
        assert views.inbound_references(WORKSPACE, [by_record_id, hemingway], ["main"]) == [
            "books/dalloway.json",
            "books/old-man.json",
        ]
        assert views.inbound_references(WORKSPACE, [hemingway], ["draft:bob"]) == []
        assert views.inbound_references(WORKSPACE, [], ["main"]) == []

        # the target arrives in FileIndex after the reference: filled then
        library.connector.seed("authors", "a3", {"name": "Tolstoy", "slug": "tolstoy"})
        library.pull()
        views = read(library)
        assert views.references(WORKSPACE, "authors", target_record_id="a3") == [
            ref("draft:alice", "books/anna.json", "tolstoy.json", "a3")
        ]
        library.app.discard_draft(WORKSPACE, USER)
        views = read(library)
        assert views.references(WORKSPACE, "authors", "hemingway.json") == [
            ref("main", "books/old-man.json", "hemingway.json", "a1")
        ]

    def test_pipelines_status_list_entries_and_runnable(self, library: Library) -> None:
        app = library.app
        library.write_four_phases()
        first, state = library.plan_and_run()
        assert state == "completed"

        library.write("authors/austen.json", {"name": "Austen", "slug": "austen"}, user="bob")
        second = library.plan(user="bob").pipeline_id
        app.request_run(second)
        app.request_cancel(second)
        views = read(library)
        assert views.runnable_pipelines() == [second]
        queued = views.pipeline_status(second)
        assert queued is not None
        assert (queued["state"], queued["cancel_requested"], queued["started_at"]) == (
            "running",
            True,
            None,
        )
        assert library.run(second) == "cancelled"

        library.write("books/bad.json", {"title": "Bad", "slug": "bad"})
        library.write("books/good.json", {"title": "Good", "slug": "good"})
        library.connector.refuse = lambda folder, fields: (
            "400 no" if fields.get("title") == "Bad" else None
        )
        planned = library.plan()
        third = planned.pipeline_id
        app.request_run(third)
        assert library.run(third) == "completed_with_errors"

        views = read(library)
        status = views.pipeline_status(third)
        assert status is not None
        assert status == {
            "pipeline_id": third,
            "workspace": WORKSPACE,
            "user": USER,
            "state": "completed_with_errors",
            "phase": "create",
            "counts": {"create": {"planned": 0, "published": 1, "failed": 1, "skipped": 0}},
            "errors": [
                {
                    "path": "books/bad.json",
                    "phase": "create",
                    "message": "400 no",
                    "code": "rejected",
                    "details": None,
                }
            ],
            "created_at": status["created_at"],
            "started_at": status["started_at"],
            "finished_at": status["finished_at"],
            "main_version": planned.main_version,
            "draft_version": planned.draft_version,
            "cancel_requested": False,
            "trace_id": None,  # planned outside any request
        }
        assert status["created_at"] < status["started_at"] < status["finished_at"]
        assert views.pipeline_status("00000000-0000-0000-0000-000000000000") is None

        def ids(statuses: list[dict[str, Any]]) -> list[str]:
            return [s["pipeline_id"] for s in statuses]

        assert ids(views.list_pipelines()) == [third, second, first]
        assert ids(views.list_pipelines(workspace=WORKSPACE, limit=2)) == [third, second]
        assert ids(views.list_pipelines(before=second)) == [first]
        assert ids(views.list_pipelines(before=first)) == []
        assert ids(views.list_pipelines(before="00000000-0000-0000-0000-000000000000")) == []
        assert ids(views.list_pipelines(user="bob")) == [second]
        assert ids(views.list_pipelines(user=USER, state="completed")) == [first]
        assert ids(views.list_pipelines(state="cancelled")) == [second]
        assert ids(views.list_pipelines(workspace="elsewhere")) == []
        assert views.list_pipelines(workspace=WORKSPACE)[0] == status

        tolstoy = views.main_file(WORKSPACE, "authors/tolstoy.json")
        war = views.main_file(WORKSPACE, "books/war.json")
        assert tolstoy is not None and war is not None
        assert views.pipeline_entries(first, phase="create") == [
            {
                "path": "authors/tolstoy.json",
                "phase": "create",
                "status": "published",
                "record_id": tolstoy["id"],
                "error": None,
            },
            {
                "path": "books/war.json",
                "phase": "create",
                "status": "published",
                "record_id": war["id"],
                "error": None,
            },
        ]
        assert [(e["phase"], e["path"]) for e in views.pipeline_entries(first)] == [
            ("edit", "books/old-man.json"),
            ("create", "authors/tolstoy.json"),
            ("create", "books/war.json"),
            ("delete", "books/dalloway.json"),
            ("backfill", "authors/tolstoy.json"),
        ]
        assert views.pipeline_entries(third, status="failed") == [
            {
                "path": "books/bad.json",
                "phase": "create",
                "status": "failed",
                "record_id": None,
                "error": "400 no",
            }
        ]
        assert views.pipeline_entries(third, phase="edit") == []
        assert views.pipeline_entries(second, status="planned") == [
            {
                "path": "authors/austen.json",
                "phase": "create",
                "status": "planned",
                "record_id": None,
                "error": None,
            }
        ]
        assert views.pipeline_entries("00000000-0000-0000-0000-000000000000") == []
        assert views.runnable_pipelines() == []

        library.connector.refuse = lambda folder, fields: None
        app.request_retry(third)
        views = read(library)
        assert views.runnable_pipelines() == [third]
        assert views.runnable_pipelines(limit=0) == []
        retried = views.pipeline_status(third)
        assert retried is not None
        assert (retried["state"], retried["errors"], retried["finished_at"]) == (
            "running",
            [],
            None,
        )
        assert retried["counts"]["create"] == {
            "planned": 1,
            "published": 1,
            "failed": 0,
            "skipped": 0,
        }
        assert views.pipeline_entries(third, status="failed") == []

    def test_stale_pipeline_reports_its_reason_as_an_error(self, library: Library) -> None:
        library.write("authors/austen.json", {"name": "Austen", "slug": "austen"})
        pipeline = library.plan()
        library.write("authors/austen.json", {"name": "Jane Austen", "slug": "austen"})
        with pytest.raises(StalePlan, match="the draft moved"):
            library.app.request_run(pipeline.pipeline_id)
        status = read(library).pipeline_status(pipeline.pipeline_id)
        assert status is not None
        assert status["state"] == "stale"
        assert status["finished_at"] is not None
        [error] = status["errors"]
        assert (error["path"], error["phase"]) == (None, None)
        assert error["message"].startswith("the draft moved from version 2 to 3")

    def test_pulls_status_list_and_runnable(self, library: Library) -> None:
        app = library.app
        [first] = read(library).list_pulls(WORKSPACE)  # the pull of ``setup``
        library.connector.records["books"].pop("b2")  # deleted upstream
        second = library.pull()
        running = Pull(app.new_id(), WORKSPACE, ["books"], {"records": [RECORD]})
        elsewhere = Pull(app.new_id(), "elsewhere", ["books"])
        app.save(running, elsewhere)
        views = read(library)
        status = views.pull_status(second.pull_id)
        assert status == {
            "pull_id": second.pull_id,
            "workspace": WORKSPACE,
            "scope": {"folders": ["authors", "books"]},
            "state": "completed",
            "created": 0,
            "updated": 0,
            "unchanged": 3,
            "deleted": 1,
            "error": None,
            "started_at": second.created_on.isoformat(),
            "finished_at": second.modified_on.isoformat(),
        }
        assert (first["state"], first["created"], first["finished_at"] is not None) == (
            "completed",
            4,
            True,
        )
        assert views.pull_status(running.pull_id) == {
            "pull_id": running.pull_id,
            "workspace": WORKSPACE,
            "scope": {"records": [RECORD]},
            "state": "running",
            "created": 0,
            "updated": 0,
            "unchanged": 0,
            "deleted": 0,
            "error": None,
            "started_at": running.created_on.isoformat(),
            "finished_at": None,
        }
        assert views.pull_status("00000000-0000-0000-0000-000000000000") is None

        def ids(statuses: list[dict[str, Any]]) -> list[str]:
            return [s["pull_id"] for s in statuses]

        everything = [running.pull_id, second.pull_id, first["pull_id"]]
        assert ids(views.list_pulls(WORKSPACE)) == everything
        assert views.list_pulls(WORKSPACE)[1] == status
        assert ids(views.list_pulls(WORKSPACE, limit=2)) == everything[:2]
        assert ids(views.list_pulls(WORKSPACE, state="completed")) == everything[1:]
        assert ids(views.list_pulls(WORKSPACE, state="failed")) == []
        assert ids(views.list_pulls("nowhere")) == []
        assert views.runnable_pulls() == [running.pull_id, elsewhere.pull_id]
        assert views.runnable_pulls(limit=1) == [running.pull_id]

        running.claim("w", running.modified_on, timedelta(seconds=30))
        running.fail("w", "the service is gone")
        app.save(running)
        views = read(library)
        assert views.runnable_pulls() == [elsewhere.pull_id]
        failed = views.pull_status(running.pull_id)
        assert failed is not None
        assert (failed["state"], failed["error"], failed["finished_at"]) == (
            "failed",
            "the service is gone",
            running.modified_on.isoformat(),
        )
        assert ids(views.list_pulls(WORKSPACE, state="failed")) == [running.pull_id]

    def test_workspaces_drafts_and_entry_pages(self, library: Library) -> None:
        app = library.app
        app.create_workspace("another", {"type": "memory"})
        library.write("books/old-man.json", {**OLD_MAN, "title": "Old Man (revised)"})
        for n in range(4):
            library.write(f"authors/x{n}.json", {"name": f"X{n}", "slug": f"x{n}"})
        library.delete("books/dalloway.json", user="bob")
        library.write("books/gone.json", {"title": "Gone", "slug": "gone"}, user="carol")
        library.delete("books/gone.json", user="carol")  # added, then dropped: no change
        pipeline = library.plan()
        views = read(library)

        assert views.workspace_ids() == ["another", WORKSPACE]
        assert views.draft_users(WORKSPACE) == [(USER, 5), ("bob", 1)]
        assert views.draft_users("another") == []
        every = views.pipeline_entries(pipeline.pipeline_id)
        pages, after = [], None
        while page := views.pipeline_entries_page(pipeline.pipeline_id, None, None, after, 2):
            after = page[-1]["cursor"]
            pages.append([{k: v for k, v in row.items() if k != "cursor"} for row in page])
        assert [len(p) for p in pages] == [2, 2, 1]
        assert [row for p in pages for row in p] == every
        created = views.pipeline_entries_page(pipeline.pipeline_id, "create", None, None, 10)
        assert [r["path"] for r in created] == [r["path"] for r in every if r["phase"] == "create"]
        assert [r["cursor"][0] for r in created] == [1] * len(created)  # create: 2nd phase
        assert views.pipeline_entries_page(pipeline.pipeline_id, None, "failed", None, 10) == []

    def test_positions(self, library: Library) -> None:
        views = library.app.views
        head = library.app.head()
        assert views.wait_for_position(head, 10)
        assert views.wait_for_position(head, 10, names=["file_index"])
        assert all(views.position(name) == head for name in PROJECTION_NAMES)
        assert views.position("no_such_projection") == 0
        assert not views.wait_for_position(head + 1, 0.05)
        assert not views.wait_for_position(head, 0.05, names=["no_such_projection"])
