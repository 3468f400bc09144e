"""Projections through the real runner into real PostgreSQL.

Events are saved by an eventsourcing Application built from the domain
aggregates; the runner runs in a thread; tests wait on the tracking position
(woken by NOTIFY), never sleep, then read the tables through the read port.
"""

from __future__ import annotations

import multiprocessing
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from eventsourcing.application import Application

from domain.draft import Draft
from domain.pipeline import PublishPipeline
from domain.plan import PlanEntry
from domain.pull import Pull
from domain.schema import FolderSchema
from domain.workspace import MainChange, Workspace
from infrastructure.postgres.database import Database
from infrastructure.postgres.projections.rebuild import rebuild
from infrastructure.postgres.projections.runner import ProjectionRunner
from infrastructure.postgres.projections.verify import verify
from infrastructure.postgres.projections.views import PostgresViews

BOOKS = {"fields": [{"name": "author", "reference": True, "referenceTarget": "authors"}]}
TABLES = (
    "file_index",
    "file_reference",
    "file_reference_schemas",
    "main_files",
    "draft_files",
    "pipeline_status",
    "pipeline_errors",
    "pipeline_entries",
    "pull_status",
)


class Store(Application[uuid.UUID]):
    name = "publishd"


def store(database: Database, schema: str) -> Store:
    return Store(env=database.eventsourcing_env(schema, pool_size=2))


def head(app: Store) -> int:
    return app.recorder.max_notification_id() or 0


@contextmanager
def projecting(database: Database, schema: str, runners: int = 1) -> Iterator[PostgresViews]:
    """Runner threads (leaders and standbys) plus the read port, for a test's duration."""
    stop = threading.Event()
    threads = [
        threading.Thread(target=ProjectionRunner(database, schema).run, args=(stop,), daemon=True)
        for _ in range(runners)
    ]
    for thread in threads:
        thread.start()
    views = PostgresViews(database, schema)
    try:
        yield views
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        views.close()


def snapshot(database: Database, schema: str) -> dict[str, list[Any]]:
    with database.connect() as conn:
        return {
            t: sorted(map(str, conn.execute(f'SELECT * FROM "{schema}"."{t}"').fetchall()))
            for t in TABLES
        }


def library(app: Store, ws_name: str = "lib") -> Workspace:
    ws = Workspace(ws_name, {"type": "sandbox"})
    ws.register_schema(FolderSchema.from_dict("books", BOOKS))
    ws.register_schema(FolderSchema.from_dict("authors", {}))
    ws.change_main(
        "pull",
        [
            MainChange("authors/hem.json", {"id": "a1", "name": "H"}, "a1"),
            MainChange("books/old.json", {"id": "b1", "author": "a1"}, "b1"),
        ],
    )
    app.save(ws)
    return ws


def test_every_view_is_projected(database: Database, schema: str) -> None:
    app = store(database, schema)
    ws = library(app)
    draft = Draft("lib", "ann")
    draft.write_file("books/new.json", {"title": "New", "author": "@/authors/woolf.json"})
    draft.delete_file("books/old.json", on_main=True)
    pid = str(uuid.uuid4())
    pipeline = PublishPipeline(pid, "lib", "ann", 1, 2, [{"phase": "create", "entries": 2}])
    pipeline.plan_entries(
        [
            PlanEntry("books/new.json", "create", {"type": "create", "folder": "books"}),
            PlanEntry("books/x.json", "create", {"type": "create", "folder": "books"}),
        ]
    )
    pipeline.request_run(
        main_version=pipeline.last_main_version, draft_version=pipeline.draft_version
    )
    app.save(draft, pipeline)
    with projecting(database, schema) as views:
        assert views.wait_for_position(head(app), 10)
        assert views.main_file("lib", "books/old.json") == {"id": "b1", "author": "a1"}
        assert views.main_folder_index("lib", "books") == {
            "b1": ("old.json", {"id": "b1", "author": "a1"})
        }
        assert views.draft_file("lib", "ann", "books/old.json") == (True, None)
        assert views.draft_file("lib", "ann", "books/new.json")[1] == {
            "title": "New",
            "author": "@/authors/woolf.json",
        }
        assert views.record_ids("lib", [("books", "old.json"), ("books", "zzz.json")]) == {
            ("books", "old.json"): "b1"
        }
        # a resolved id in a schema field: both target columns filled from FileIndex
        assert views.references("lib", "authors", "hem.json") == [
            {
                "branch": "main",
                "source_path": "books/old.json",
                "target_folder": "authors",
                "target_filename": "hem.json",
                "target_record_id": "a1",
            }
        ]
        # the @-reference's target arrives in FileIndex AFTER the reference
        assert views.references("lib", "authors", "woolf.json")[0]["target_record_id"] is None
        ws.change_main("publish", [MainChange("authors/woolf.json", {"id": "a2"}, "a2")])
        app.save(ws)
        assert views.wait_for_position(head(app), 10)
        assert views.references("lib", "authors", target_record_id="a2") == [
            {
                "branch": "draft:ann",
                "source_path": "books/new.json",
                "target_folder": "authors",
                "target_filename": "woolf.json",
                "target_record_id": "a2",
            }
        ]
        assert views.inbound_references("lib", [("authors", "woolf.json", None)], ["main"]) == []
        assert views.inbound_references("lib", [("authors", "x.json", "a2")], ["draft:ann"]) == [
            "books/new.json"
        ]
        entry = views.file_index_by_record("lib", "authors", "a2")
        assert entry is not None and entry["filename"] == "woolf.json"
        assert views.file_index_by_filename("lib", "authors", "woolf.json") == entry

        now = pipeline.modified_on

        pipeline.claim("w1", now, timedelta(seconds=30))
        pipeline.start_phase("w1", "create")
        pipeline.publish_entry("w1", "create:books/new.json", "b9", {"id": "b9"}, 2)
        pipeline.fail_entry("w1", "create:books/x.json", "400 bad")
        pipeline.finish("w1")
        app.save(pipeline)
        assert views.wait_for_position(head(app), 10)
        status = views.pipeline_status(pid)
        assert status is not None
        assert status["state"] == "completed_with_errors"
        assert status["phase"] == "create"
        assert status["counts"] == {
            "create": {"planned": 0, "published": 1, "failed": 1, "skipped": 0}
        }
        assert status["errors"] == [
            {
                "path": "books/x.json",
                "phase": "create",
                "message": "400 bad",
                "code": "rejected",
                "details": None,
            }
        ]
        assert status["started_at"] and status["finished_at"] and status["created_at"]
        assert views.pipeline_entries(pid) == [
            {
                "path": "books/new.json",
                "phase": "create",
                "status": "published",
                "record_id": "b9",
                "error": None,
            },
            {
                "path": "books/x.json",
                "phase": "create",
                "status": "failed",
                "record_id": None,
                "error": "400 bad",
            },
        ]
        assert [p["pipeline_id"] for p in views.list_pipelines(workspace="lib")] == [pid]
        pipeline.request_retry(main_version=pipeline.last_main_version)
        app.save(pipeline)
        assert views.wait_for_position(head(app), 10)
        status = views.pipeline_status(pid)
        assert status is not None and status["state"] == "running" and status["errors"] == []
        assert status["counts"]["create"] == {
            "planned": 1,
            "published": 1,
            "failed": 0,
            "skipped": 0,
        }
        assert views.runnable_pipelines() == [pid]

        draft.discard()
        app.save(draft)
        assert views.wait_for_position(head(app), 10)
        assert views.draft_files("lib", "ann") == {}
        assert views.references("lib", "authors", "woolf.json") == []
    assert verify(database, schema).ok


def test_rebuild_gives_identical_tables_and_verify_finds_drift(
    database: Database, schema: str
) -> None:
    app = store(database, schema)
    ws = library(app)
    for n in range(30):
        ws.change_main(
            "pull",
            [MainChange(f"books/b{n}.json", {"id": f"r{n}", "author": "a1"}, f"r{n}")],
        )
    ws.mark_seen("pull", "books", ["r1", "r2"])
    app.save(ws)
    with projecting(database, schema) as views:
        assert views.wait_for_position(head(app), 10)
        before = snapshot(database, schema)
        assert len(before["main_files"]) == 32
        rebuild(database, schema, events_table="publishd_events")
        assert snapshot(database, schema) == before
        rebuild(database, schema, "file_reference")
        assert snapshot(database, schema) == before
        assert verify(database, schema).ok
        with database.connect() as conn:
            conn.execute(
                f"UPDATE \"{schema}\".main_files SET content = '{{}}' WHERE path = %s",
                ("books/b3.json",),
            )
        report = verify(database, schema)
        assert set(report.differences) == {"main_files"}
        assert report.differences["main_files"].only_live == 1


def test_pulls_are_projected_live_and_rebuilt_alike(database: Database, schema: str) -> None:
    """Then a rebuild with no runner anywhere replays PullStatus itself, to the same rows."""
    app = store(database, schema)
    lease = timedelta(seconds=30)

    def started(workspace: str, scope: dict[str, Any] | None = None) -> Pull:
        pull = Pull(str(uuid.uuid4()), workspace, ["books"], scope)
        pull.claim("w", pull.modified_on, lease)
        app.save(pull)
        return pull

    done = started("lib")
    counts = {"created": 2, "updated": 1, "unchanged": 0, "deleted": 1}
    done.record_page("w", "books", 0, counts, offset=0, listed=["b1", "b2", "b3"], done=True)
    done.complete("w")
    app.save(done)
    named = started("lib", {"records": [{"folder": "books", "record_id": "b1"}]})
    elsewhere = started("other")
    with projecting(database, schema) as views:
        assert views.wait_for_position(head(app), 10)
        assert views.pull_status(done.pull_id) == {
            "pull_id": done.pull_id,
            "workspace": "lib",
            "scope": {"folders": ["books"]},
            "state": "completed",
            **counts,
            "error": None,
            "started_at": done.created_on.isoformat(),
            "finished_at": done.modified_on.isoformat(),
        }
        assert views.runnable_pulls() == [named.pull_id, elsewhere.pull_id]
        assert [p["pull_id"] for p in views.list_pulls("lib")] == [named.pull_id, done.pull_id]
        named.fail("w", "the service is gone")
        app.save(named)
        assert views.wait_for_position(head(app), 10)
        assert views.runnable_pulls() == [elsewhere.pull_id]
        failed = views.pull_status(named.pull_id)
        assert failed is not None
        assert (failed["state"], failed["error"]) == ("failed", "the service is gone")
        assert failed["scope"] == {"records": [{"folder": "books", "record_id": "b1"}]}
    before = snapshot(database, schema)
    assert len(before["pull_status"]) == 3
    rebuild(database, schema, timeout=30)
    assert snapshot(database, schema) == before
    rebuild(database, schema, "pull_status", timeout=30)
    assert snapshot(database, schema) == before
    assert verify(database, schema).ok


def test_one_leader_per_projection_and_takeover(database: Database, schema: str) -> None:
    app = store(database, schema)
    library(app)
    first, second = ProjectionRunner(database, schema), ProjectionRunner(database, schema)
    conn1, conn2 = first.connect(), second.connect()
    try:
        first.acquire(conn1)
        second.acquire(conn2)
        assert set(first.led) == set(ProjectionRunner(database, schema).names)
        assert second.led == {}
        second.acquire(conn2)
        assert second.led == {}  # a standby stays a standby while the leader lives
        conn1.close()  # the leader dies: its session locks go with it
        second.acquire(conn2, wait=True)  # blocks until the server has released them
        assert set(second.led) == set(first.led)
        while second.step(conn2):
            pass
        assert second.led["main_files"] == head(app)
    finally:
        conn2.close()


def _write(url: str, schema: str, tag: str, count: int) -> None:
    from infrastructure.postgres.database import from_url

    app = store(from_url(url), schema)
    for n in range(count):
        pid = str(uuid.uuid4())
        pipeline = PublishPipeline(pid, tag, "u", 0, 0, [{"phase": "edit", "entries": 3}])
        pipeline.plan_entries([PlanEntry(f"b/{i}.json", "edit", {}) for i in range(3)])
        pipeline.request_run(
            main_version=pipeline.last_main_version, draft_version=pipeline.draft_version
        )
        pipeline.claim("w", pipeline.modified_on, timedelta(seconds=30))
        pipeline.publish_entry("w", "edit:b/0.json", None, None, 1)
        ws = app.repository.get(Workspace.create_id(tag)) if n else Workspace(tag, {})
        ws.change_main("run", [MainChange(f"b/{n}.json", {"n": n}, f"{tag}{n}")])
        app.save(pipeline, ws)


def test_concurrent_writers_miss_nothing_and_apply_nothing_twice(
    database: Database, schema: str
) -> None:
    app = store(database, schema)
    count = 60
    ctx = multiprocessing.get_context("spawn")
    with projecting(database, schema, runners=2) as views:
        writers = [
            ctx.Process(target=_write, args=(database.conninfo, schema, tag, count))
            for tag in ("w1", "w2")
        ]
        for process in writers:
            process.start()
        for process in writers:
            process.join(120)
            assert process.exitcode == 0
        assert views.wait_for_position(head(app), 30)
        for tag in ("w1", "w2"):
            statuses = views.list_pipelines(workspace=tag, limit=1000)
            assert len(statuses) == count
            # counts are deltas: an event applied twice would show here
            assert all(
                s["counts"]["edit"] == {"planned": 2, "published": 1, "failed": 0, "skipped": 0}
                for s in statuses
            )
            assert len(views.main_folder_index(tag, "b")) == count
    assert verify(database, schema).ok
