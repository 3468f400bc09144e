"""The projection writers' contract: the memory and the PostgreSQL adapters end with equal rows.

Each case records events (real aggregates saved to an in-memory event store,
or a real application's commands), decodes them once, and feeds the very same
batches through the pure projections into both adapters: the six memory
writers (``MemoryProjector``) and the six PostgreSQL writers (``apply_batch``,
as the runner commits a page). Every table of the memory side must then hold
the rows of its PostgreSQL twin, at every batch size, so that whatever the
memory views answer, the PostgreSQL views answer too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate
from psycopg import sql

from application.projections import PROJECTION_NAMES
from application.projections.events import ProjectedEvent, parse_content
from application.projections.memory.projector import MemoryProjector, projected_events
from application.projections.memory.writers import MemoryTables
from domain.draft import Draft
from domain.errors import StalePlan
from domain.pull import Pull
from domain.schema import FolderSchema
from domain.workspace import MainChange, Workspace
from infrastructure.postgres.database import Database
from infrastructure.postgres.projections.batch import apply_batch, positions
from infrastructure.postgres.projections.context import ProjectionCaches
from infrastructure.postgres.projections.registry import PROJECTIONS
from infrastructure.postgres.projections.tables import SHARED, VIEW_TABLES, ProjectionTables
from tests.support.library import Library, memory_app

Rows = dict[str, list[tuple[Any, ...]]]
BOOKS = {"fields": [{"name": "author", "reference": True, "referenceTarget": "authors"}]}
_TIMESTAMPS = {
    "file_index": (4,),
    "pipeline_status": (11, 12, 13, 14),
    "pull_status": (9, 10, 11),
}
"""The ``timestamptz`` columns of each table, by position."""
_JSON = {"file_reference_schemas": 2, "main_files": 4, "draft_files": 3, "pull_status": 2}
"""The ``jsonb`` column of each table, by position."""


def _moment(value: datetime | str | None) -> str | None:
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment.astimezone(UTC).isoformat()


def _json(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (dict, list)):
        value = parse_content(value)  # a memory row's Content: the JSON text it was recorded as
    return json.dumps(value, sort_keys=True)


def _normalised(table: str, rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """Rows in one comparable form: timestamps as UTC ISO text, JSON as sorted-key text."""
    result = []
    for row in rows:
        values = [str(v) if isinstance(v, uuid.UUID) else v for v in row]
        for index in _TIMESTAMPS.get(table, ()):
            values[index] = _moment(values[index])
        if table in _JSON:
            values[_JSON[table]] = _json(values[_JSON[table]])
        result.append(tuple(values))
    return sorted(result, key=repr)


def memory_rows(tables: MemoryTables) -> Rows:
    return {
        "projection_workspaces": _normalised("", list(tables.workspaces.items())),
        "projection_drafts": _normalised("", [(k, *v) for k, v in tables.drafts.items()]),
        "file_index": _normalised("file_index", list(tables.file_index.values())),
        "file_reference": _normalised("file_reference", tables.references),
        "file_reference_schemas": _normalised(
            "file_reference_schemas", [(*k, v) for k, v in tables.schemas.items()]
        ),
        "main_files": _normalised("main_files", list(tables.main_files.values())),
        "draft_files": _normalised("draft_files", list(tables.draft_files.values())),
        "pipeline_status": _normalised("pipeline_status", list(tables.status.values())),
        "pipeline_errors": _normalised("pipeline_errors", list(tables.errors.values())),
        "pipeline_entries": _normalised("pipeline_entries", list(tables.entries.values())),
        "pull_status": _normalised("pull_status", list(tables.pulls.values())),
    }


class PostgresWriters:
    """The PostgreSQL writers on one schema, fed page by page the way the runner commits."""

    def __init__(self, database: Database, schema: str) -> None:
        self.conn = database.connect(autocommit=True)
        self.tables = ProjectionTables(schema)
        self.tables.create(self.conn)
        self.caches = ProjectionCaches()
        self.position = positions(self.conn, self.tables, PROJECTION_NAMES)[PROJECTION_NAMES[0]]

    def apply(self, events: Sequence[ProjectedEvent]) -> None:
        page = {
            name: [e for e in events if e.name in PROJECTIONS[name].projection.events]
            for name in PROJECTION_NAMES
        }
        end = events[-1].notification_id
        apply_batch(self.conn, self.tables, self.caches, PROJECTION_NAMES, page, self.position, end)
        self.position = end

    def rows(self) -> Rows:
        found: Rows = {}
        for table in (*SHARED, *VIEW_TABLES):
            query = sql.SQL("SELECT * FROM {}").format(self.tables.table(table))
            found[table] = _normalised(table, self.conn.execute(query).fetchall())
        return found


class BothWriters:
    """The memory and the PostgreSQL writers, fed the same events in the same batches."""

    def __init__(self, postgres: PostgresWriters, batch: int) -> None:
        self.postgres = postgres
        self.batch = batch
        self.tables = MemoryTables()
        self.memory = MemoryProjector(self.tables)
        self.fed = 0

    def feed(self, events: Sequence[ProjectedEvent]) -> Rows:
        """Project the events not fed yet into both; their rows, asserted equal."""
        new = [e for e in events if e.notification_id > self.fed]
        assert new, "a step without events proves nothing"
        for start in range(0, len(new), self.batch):
            page = new[start : start + self.batch]
            self.memory.apply(page)
            self.postgres.apply(page)
        self.fed = new[-1].notification_id
        rows = memory_rows(self.tables)
        assert rows == self.postgres.rows()
        return rows


@pytest.fixture(params=[1, 3, 1000], ids=lambda size: f"batch{size}")
def writers(
    request: pytest.FixtureRequest, database: Database, schema: str
) -> Iterator[BothWriters]:
    postgres = PostgresWriters(database, schema)
    try:
        yield BothWriters(postgres, request.param)
    finally:
        postgres.conn.close()


class EventLog:
    """Aggregates saved to an in-memory event store, read back as the projections read them."""

    def __init__(self) -> None:
        self.store = Application[uuid.UUID](env={"PERSISTENCE_MODULE": "eventsourcing.popo"})

    def save(self, *aggregates: Aggregate) -> None:
        self.store.save(*aggregates)

    def events(self) -> list[ProjectedEvent]:
        return projected_events(self.store.recorder.select_notifications(1, 100_000))


def library_workspace(log: EventLog) -> Workspace:
    ws = Workspace("lib", {"type": "memory"})
    ws.register_schema(FolderSchema.from_dict("books", BOOKS))
    ws.change_main(
        "pull",
        [
            MainChange("authors/hem.json", {"id": "a1", "name": "Hemingway"}, "a1"),
            MainChange("books/old.json", {"id": "b1", "author": "a1", "note": "caf\u00e9"}, "b1"),
        ],
    )
    log.save(ws)
    return ws


class TestWritersContract:
    """Every projection writer of ``application.projections.ports``, memory against PostgreSQL."""

    def test_main_files(self, writers: BothWriters) -> None:
        log = EventLog()
        ws = library_workspace(log)
        ws.change_main("pull", [MainChange("books/old.json", {"id": "b1", "v": [1, {}]}, "b1")])
        ws.change_main("pull", [MainChange("books/new.json", {"title": "no id"}, None)])
        ws.change_main("pull", [MainChange("authors/hem.json", None, "a1")])
        ws.change_main("pull", [MainChange("authors/hem.json", {"id": "a1", "n": 2}, "a1")])
        other = Workspace("other", {})
        other.change_main("pull", [MainChange("books/old.json", {"id": "x"}, "x")])
        log.save(ws, other)

        rows = writers.feed(log.events())
        assert [(r[0], r[1], r[3]) for r in rows["main_files"]] == [
            ("lib", "authors/hem.json", "a1"),
            ("lib", "books/new.json", None),
            ("lib", "books/old.json", "b1"),
            ("other", "books/old.json", "x"),
        ]

    def test_draft_files(self, writers: BothWriters) -> None:
        log = EventLog()
        library_workspace(log)
        ann, bob = Draft("lib", "ann"), Draft("lib", "bob")
        ann.write_file("books/1.json", {"n": 1})
        ann.delete_file("books/old.json", on_main=True)
        bob.write_file("books/1.json", {"n": "bob"})
        ann.write_file("books/3.json", {"n": 3})
        ann.delete_file("books/3.json", on_main=False)
        ann.discard()
        ann.write_file("books/4.json", {"n": 4})
        ann.delete_file("books/old.json", on_main=True)
        ann.write_file("books/5.json", {"n": 5})
        ann.rebase("p", ["books/5.json"], dict(ann.changes))
        log.save(ann, bob)

        rows = writers.feed(log.events())
        assert [r[:3] for r in rows["draft_files"]] == [
            ("lib", "ann", "books/4.json"),
            ("lib", "ann", "books/old.json"),
            ("lib", "bob", "books/1.json"),
        ]
        assert rows["draft_files"][1][3] is None  # the draft deletes it

    def test_file_index(self, writers: BothWriters) -> None:
        log = EventLog()
        ws = library_workspace(log)
        ws.mark_seen("pull", "authors", ["a1", "unknown"])
        ws.change_main("pull", [MainChange("authors/hemingway.json", {"id": "a1"}, "a1")])
        ws.change_main("pull", [MainChange("authors/hem.json", {"id": "a9"}, "a9")])
        ws.mark_seen("pull", "authors", ["a9"])
        ws.change_main("pull", [MainChange("books/old.json", None, "b1")])
        ws.change_main("pull", [MainChange("books/again.json", {"id": "b1"}, "b1")])
        ws.change_main("pull", [MainChange("books/again.json", None, None)])
        ws.change_main("pull", [MainChange("books/kept.json", {"id": "b7"}, "b7")])
        ws.mark_seen("pull", "books", ["b7"])
        log.save(ws)

        rows = writers.feed(log.events())
        assert [r[1:4] for r in rows["file_index"]] == [
            ("authors", "a1", "hemingway.json"),
            ("authors", "a9", "hem.json"),
            ("books", "b7", "kept.json"),
        ]
        assert rows["file_index"][2][4] == _moment(ws.modified_on)  # seen after its write

    def test_file_reference(self, writers: BothWriters) -> None:
        log = EventLog()
        ws = library_workspace(log)  # books/old.json points at a1 by a resolved id
        draft = Draft("lib", "ann")
        draft.write_file(
            "books/new.json", {"author": "@/authors/woolf.json", "also": "@/authors/hem.json"}
        )
        draft.write_file("books/gone.json", {"author": "@/authors/hem.json"})
        draft.delete_file("books/gone.json", on_main=False)
        log.save(draft)
        ws.change_main("run", [MainChange("authors/woolf.json", {"id": "a2"}, "a2")])
        log.save(ws)  # the target arrives after the pointer

        rows = writers.feed(log.events())
        assert [r[1:7] for r in rows["file_reference"]] == [
            ("draft:ann", "books/new.json", "authors", "hem.json", "a1", "filename"),
            ("draft:ann", "books/new.json", "authors", "woolf.json", "a2", "filename"),
            ("main", "books/old.json", "authors", "hem.json", "a1", "record_id"),
        ]

        ws.change_main("run", [MainChange("authors/ernest.json", {"id": "a1"}, "a1")])
        # the folder's schema changes between two files of one batch
        ws.register_schema(FolderSchema.from_dict("books", {}))
        ws.change_main("pull", [MainChange("books/plain.json", {"author": "a2"}, None)])
        ws.register_schema(FolderSchema.from_dict("books", BOOKS))
        ws.change_main("pull", [MainChange("books/typed.json", {"author": "a2"}, None)])
        ws.change_main("run", [MainChange("authors/woolf.json", None, "a2")])
        bob = Draft("lib", "bob")
        bob.write_file("books/b.json", {"author": "@/authors/woolf.json"})
        bob.discard()
        log.save(ws, bob)

        rows = writers.feed(log.events())
        assert [r[1:7] for r in rows["file_reference"]] == [
            ("draft:ann", "books/new.json", "authors", "hem.json", None, "filename"),
            ("draft:ann", "books/new.json", "authors", "woolf.json", None, "filename"),
            ("main", "books/old.json", "authors", "ernest.json", "a1", "record_id"),
            ("main", "books/typed.json", "authors", None, "a2", "record_id"),
        ]
        assert [r[:2] for r in rows["file_reference_schemas"]] == [("lib", "books")]

    def test_pipeline_status_and_entries(self, writers: BothWriters) -> None:
        """Every pipeline event a real application records: a run with a failure and a
        dependency skip, its retry, cancels before and during a run, a stale plan."""
        library = Library(memory_app())
        library.setup()
        app = library.app

        def events() -> list[ProjectedEvent]:
            return projected_events(app.recorder.select_notifications(1, 100_000))

        library.write_four_phases()
        library.connector.refuse = lambda folder, fields: (
            "400 no" if fields.get("title") == "War" else None
        )
        first, _ = library.plan_and_run()
        rows = writers.feed(events())
        assert [r[1:4] for r in rows["pipeline_errors"]] == [
            ("backfill", "authors/tolstoy.json", "skipped"),
            ("create", "books/war.json", "failed"),
        ]
        assert [r[3] for r in rows["pipeline_status"]] == ["completed_with_errors"]

        library.connector.refuse = lambda folder, fields: None
        app.request_retry(first)
        rows = writers.feed(events())
        assert rows["pipeline_errors"] == []
        assert [r[3] for r in rows["pipeline_status"]] == ["running"]
        library.run(first)

        library.write("authors/austen.json", {"name": "Austen", "slug": "austen"}, user="bob")
        app.request_cancel(library.plan(user="bob").pipeline_id)
        stale = library.plan(user="bob").pipeline_id
        library.write("authors/austen.json", {"name": "Jane Austen", "slug": "austen"}, "bob")
        with pytest.raises(StalePlan):
            app.request_run(stale)
        for n in range(6):
            library.write(f"books/b{n}.json", {"title": f"B{n}", "slug": f"b{n}"}, user="bob")
        during = library.plan(user="bob").pipeline_id
        app.request_run(during)

        def cancel(idempotency_key: str) -> None:
            app.request_cancel(during)

        library.connector.on_call = cancel
        library.concurrency = 1
        library.run(during)

        rows = writers.feed(events())
        assert sorted(r[3] for r in rows["pipeline_status"]) == [
            "cancelled",
            "cancelled",
            "completed",
            "stale",
        ]
        assert {r[4] for r in rows["pipeline_entries"]} == {"published", "planned"}

    def test_pull_status(self, writers: BothWriters) -> None:
        """Pulls of folders and of named records, completed, failed and running, across feeds
        (a stored row then changes); the totals a pull completes with replace its pages' sum."""
        log = EventLog()
        lease = timedelta(seconds=5)

        def pull(folders: list[str], scope: dict[str, Any] | None = None) -> Pull:
            started = Pull(str(uuid.uuid4()), "lib", folders, scope)
            started.claim("w", started.modified_on, lease)
            return started

        def page(p: Pull, folder: str, n: int, counts: list[int], done: bool) -> None:
            named = dict(zip(("created", "updated", "unchanged", "deleted"), counts, strict=True))
            p.record_page("w", folder, n, named, offset=n, listed=[f"r{n}"], done=done)

        whole = pull(["authors", "books"])
        page(whole, "authors", 0, [2, 0, 1, 0], True)
        page(whole, "books", 0, [1, 1, 0, 0], False)
        named = pull(["books"], {"records": [{"folder": "books", "record_id": "b1"}]})
        page(named, "books", 0, [0, 1, 0, 1], True)
        named.complete("w")
        failing = pull(["books"])
        page(failing, "books", 0, [1, 0, 0, 0], False)
        failing.fail("w", "503 from the service")
        log.save(whole, named, failing)
        rows = writers.feed(log.events())
        by_id = {r[0]: r for r in rows["pull_status"]}
        assert by_id[whole.pull_id][3:9] == ("running", 3, 1, 1, 0, None)
        assert by_id[named.pull_id][3:9] == ("completed", 0, 1, 0, 1, None)
        assert by_id[failing.pull_id][3:9] == ("failed", 1, 0, 0, 0, "503 from the service")
        assert by_id[failing.pull_id][10] is not None  # finished_at

        whole.claim("w", whole.modified_on, lease)
        page(whole, "books", 1, [0, 0, 4, 1], True)
        whole.complete("w")
        log.save(whole)
        events = log.events()
        totals = {"created": 3, "updated": 1, "unchanged": 5, "deleted": 2}
        events[-1] = msgspec.structs.replace(events[-1], data={"counts": totals})
        rows = writers.feed(events)
        by_id = {r[0]: r for r in rows["pull_status"]}
        assert by_id[whole.pull_id][3:9] == ("completed", 3, 1, 5, 2, None)
        assert json.loads(by_id[whole.pull_id][2]) == {"folders": ["authors", "books"]}
