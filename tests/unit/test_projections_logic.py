"""The projection logic on in-memory adapters: no database, same contract.

Events come from the real aggregates, through the real JSON transcoder and the
projections' own decoder, so the tests also pin the stored event format.
"""

from __future__ import annotations

import ast
import itertools
import pathlib
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import msgspec
import pytest
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, Mapper, UUIDAsHex

from application.projections.events import ProjectedEvent, decode, event_name, parse_content
from application.projections.memory.projector import MemoryProjector
from application.projections.memory.writers import MemoryTables
from application.projections.pipeline_status import counts_dict
from application.projections.ports import PullStatusRow
from domain.draft import Draft
from domain.pipeline import PublishPipeline
from domain.plan import PlanEntry
from domain.pull import Pull
from domain.schema import FolderSchema
from domain.workspace import MainChange, Workspace

BOOKS = {"fields": [{"name": "author", "reference": True, "referenceTarget": "authors"}]}


def _mapper() -> Mapper[Any]:
    transcoder = JSONTranscoder()
    transcoder.register(UUIDAsHex())
    transcoder.register(DatetimeAsISO())
    return Mapper(transcoder=transcoder)


MAPPER = _mapper()
_ids = itertools.count(1)


def recorded(*aggregates: Aggregate) -> list[ProjectedEvent]:
    events = []
    for aggregate in aggregates:
        for domain_event in aggregate.collect_events():
            stored = MAPPER.to_stored_event(domain_event)
            events.append(
                decode(
                    next(_ids),
                    str(stored.originator_id),
                    stored.originator_version,
                    event_name(stored.topic),
                    stored.state,
                )
            )
    return events


def project(tables: MemoryTables, events: Sequence[ProjectedEvent], batch: int = 1000) -> None:
    projector = MemoryProjector(tables)
    for start in range(0, len(events), batch):
        projector.apply(events[start : start + batch])


def test_topics_name_the_event_class() -> None:
    assert event_name("domain.pipeline:PublishPipeline.EntryPublished") == "EntryPublished"
    ws = Workspace("w", {})
    (event,) = recorded(ws)
    assert event.name == "WorkspaceCreated"
    assert event.timestamp == ws.created_on.isoformat()


def library() -> tuple[Workspace, list[ProjectedEvent]]:
    ws = Workspace("lib", {})
    ws.register_schema(FolderSchema.from_dict("books", BOOKS))
    ws.change_main(
        "pull",
        [
            MainChange("authors/hem.json", {"id": "a1"}, "a1"),
            MainChange("books/old.json", {"id": "b1", "author": "a1"}, "b1"),
        ],
    )
    return ws, recorded(ws)


def test_file_index_follows_renames_takeovers_and_removals() -> None:
    ws, events = library()
    ws.change_main("pull", [MainChange("authors/hemingway.json", {"id": "a1"}, "a1")])
    ws.change_main("pull", [MainChange("authors/hem.json", {"id": "a9"}, "a9")])
    ws.change_main("pull", [MainChange("books/old.json", None, "b1")])
    events += recorded(ws)
    for batch in (1, 1000):
        tables = MemoryTables()
        project(tables, events, batch)
        assert {(r.folder, r.record_id, r.filename) for r in tables.file_index.values()} == {
            ("authors", "a1", "hemingway.json"),
            ("authors", "a9", "hem.json"),
        }
        assert set(tables.main_files) == {
            ("lib", "authors/hem.json"),
            ("lib", "authors/hemingway.json"),
        }


def test_records_seen_touch_last_seen_at_in_the_same_batch_order() -> None:
    ws, events = library()
    ws.mark_seen("pull", "authors", ["a1", "unknown"])
    events += recorded(ws)
    tables = MemoryTables()
    project(tables, events)
    assert tables.file_index[("lib", "authors", "a1")].last_seen_at == ws.modified_on.isoformat()
    assert ("lib", "authors", "unknown") not in tables.file_index


def test_references_are_filled_from_file_index_whichever_comes_first() -> None:
    ws, events = library()
    draft = Draft("lib", "ann")
    draft.write_file(
        "books/new.json", {"author": "@/authors/woolf.json", "also": "@/authors/hem.json"}
    )
    events += recorded(draft)
    tables = MemoryTables()
    project(tables, events)
    refs = {
        (r.branch, r.source_path, r.target_filename, r.target_record_id) for r in tables.references
    }
    assert refs == {
        ("main", "books/old.json", "hem.json", "a1"),
        ("draft:ann", "books/new.json", "woolf.json", None),
        ("draft:ann", "books/new.json", "hem.json", "a1"),
    }
    ws.change_main("run", [MainChange("authors/woolf.json", {"id": "a2"}, "a2")])
    project(tables, recorded(ws))
    assert ("draft:ann", "books/new.json", "woolf.json", "a2") in {
        (r.branch, r.source_path, r.target_filename, r.target_record_id) for r in tables.references
    }
    draft.discard()
    project(tables, recorded(draft))
    assert {r.branch for r in tables.references} == {"main"}


def test_main_references_follow_the_schema_each_file_was_written_under() -> None:
    """Also when the folder's schema changes between two files in one batch."""
    ws, events = library()  # books/old.json names author a1 under BOOKS
    ws.register_schema(FolderSchema.from_dict("books", {}))
    ws.change_main("pull", [MainChange("books/new.json", {"author": "a1"}, None)])
    ws.register_schema(FolderSchema.from_dict("books", BOOKS))
    ws.change_main("pull", [MainChange("books/newer.json", {"author": "a1"}, None)])
    events += recorded(ws)
    for batch in (1, 1000):
        tables = MemoryTables()
        project(tables, events, batch)
        assert {(r.source_path, r.target_record_id) for r in tables.references} == {
            ("books/old.json", "a1"),
            ("books/newer.json", "a1"),
        }


def test_drafts_write_delete_revert_discard_and_rebase() -> None:
    draft = Draft("lib", "ann")
    draft.write_file("a/1.json", {"n": 1})
    draft.delete_file("a/2.json", on_main=True)
    draft.write_file("a/3.json", {"n": 3})
    draft.delete_file("a/3.json", on_main=False)
    draft.discard()
    draft.write_file("a/4.json", {"n": 4})
    draft.write_file("a/5.json", {"n": 5})
    draft.rebase("p", ["a/5.json"], dict(draft.changes))
    events = recorded(draft)
    for batch in (1, 3, 1000):
        tables = MemoryTables()
        project(tables, events, batch)
        contents = {k[2]: parse_content(r.content) for k, r in tables.draft_files.items()}
        assert contents == {"a/4.json": {"n": 4}}


def pipeline_events() -> tuple[PublishPipeline, list[ProjectedEvent]]:
    pid = "00000000-0000-0000-0000-000000000001"
    p = PublishPipeline(
        pid,
        "lib",
        "ann",
        3,
        4,
        [{"phase": "edit", "entries": 1}, {"phase": "create", "entries": 2}],
    )
    p.plan_entries(
        [
            PlanEntry("a/1.json", "edit", {"type": "update", "record_id": "r1"}),
            PlanEntry("a/2.json", "create", {"type": "create"}),
            PlanEntry("a/3.json", "create", {"type": "create"}),
        ]
    )
    p.request_run(main_version=p.last_main_version, draft_version=p.draft_version)
    p.claim("w", p.modified_on, timedelta(seconds=5))
    p.start_phase("w", "edit")
    p.dispatch("w", "edit:a/1.json", "k")
    p.publish_entry("w", "edit:a/1.json", "r1", {}, 4)
    p.complete_phase("w", "edit")
    p.start_phase("w", "create")
    p.publish_entry("w", "create:a/2.json", "r2", {}, 5)
    p.fail_entry("w", "create:a/3.json", "400 no")
    p.finish("w")
    return p, recorded(p)


@pytest.mark.parametrize("batch", [1, 4, 1000])
def test_pipeline_status_and_entries(batch: int) -> None:
    p, events = pipeline_events()
    tables = MemoryTables()
    project(tables, events, batch)
    row = tables.status[p.pipeline_id]
    assert (row.state, row.phase, row.main_version, row.draft_version) == (
        "completed_with_errors",
        "create",
        3,
        4,
    )
    assert counts_dict(row.phases, row.counts) == p.counts()
    # the event's own timestamp (the aggregate's modified_on still holds the previous one)
    assert row.started_at is not None and row.finished_at == events[-1].timestamp
    assert [(e.path, e.status, e.record_id, e.error) for e in tables.entries.values()] == [
        ("a/1.json", "published", "r1", None),
        ("a/2.json", "published", "r2", None),
        ("a/3.json", "failed", None, "400 no"),
    ]
    assert list(tables.errors) == [(p.pipeline_id, "create", "a/3.json")]
    p.request_retry(main_version=p.last_main_version)
    project(tables, recorded(p), batch)
    row = tables.status[p.pipeline_id]
    assert row.state == "running" and row.finished_at is None and not tables.errors
    assert counts_dict(row.phases, row.counts) == p.counts()
    assert tables.entries[(p.pipeline_id, "create", "a/3.json")].status == "planned"


PULL = "00000000-0000-0000-0000-0000000000a1"
PAGES = {
    "authors": {"created": 2, "updated": 0, "unchanged": 1, "deleted": 0},
    "books": {"created": 1, "updated": 1, "unchanged": 0, "deleted": 1},
}


def started_pull(pull_id: str = PULL, scope: dict[str, Any] | None = None) -> Pull:
    """A pull claimed (twice: a renewal) with one page of each folder recorded."""
    pull = Pull(pull_id=pull_id, workspace_id="lib", folders=list(PAGES), scope=scope)
    pull.claim("w", pull.modified_on, timedelta(seconds=5))
    for folder, counts in PAGES.items():
        pull.claim("w", pull.modified_on, timedelta(seconds=5))
        pull.record_page("w", folder, 0, counts, offset=0, listed=["r"], done=True)
    return pull


@pytest.mark.parametrize("batch", [1, 2, 1000])
def test_pull_status_adds_pages_and_ends_completed_or_failed(batch: int) -> None:
    done, failed = started_pull(), started_pull("00000000-0000-0000-0000-0000000000a2")
    done.complete("w")
    failed.fail("w", "503 from the service")
    events = recorded(done)
    finished = events[-1].timestamp
    events += recorded(failed)
    tables = MemoryTables()
    project(tables, events, batch)
    first = events[0].timestamp
    assert tables.pulls[PULL] == PullStatusRow(
        PULL, "lib", {"folders": ["authors", "books"]}, "completed", 3, 1, 1, 1, None,
        first, finished, finished,
    )  # fmt: skip
    row = tables.pulls[failed.pull_id]
    assert (row.state, row.error, row.finished_at) == (
        "failed",
        "503 from the service",
        events[-1].timestamp,
    )
    assert (row.created, row.updated, row.unchanged, row.deleted) == (3, 1, 1, 1)


@pytest.mark.parametrize("batch", [1, 1000])
def test_pull_status_takes_the_completed_totals_over_the_pages(batch: int) -> None:
    """The totals a pull completes with are the truth, whatever its pages added up to."""
    pull = started_pull()
    pull.complete("w")
    events = recorded(pull)
    totals = {"created": 1, "updated": 2, "unchanged": 3, "deleted": 4}
    events[-1] = msgspec.structs.replace(events[-1], data={"counts": totals})
    tables = MemoryTables()
    project(tables, events[:3])  # a page lands in a batch of its own
    project(tables, events[3:], batch)
    row = tables.pulls[PULL]
    assert (row.state, row.created, row.updated, row.unchanged, row.deleted) == (
        "completed",
        1,
        2,
        3,
        4,
    )


def test_pull_status_keeps_a_named_scope() -> None:
    scope: dict[str, Any] = {"records": [{"folder": "books", "record_id": "b1"}]}
    tables = MemoryTables()
    project(tables, recorded(started_pull(scope=scope)))
    assert (tables.pulls[PULL].scope, tables.pulls[PULL].state) == (scope, "running")


def test_pull_status_reads_old_streams() -> None:
    """Events recorded before scopes (and before pages named their records)."""
    at = "2024-05-01T10:00:00+00:00"
    started = {"pull_id": PULL, "workspace_id": "lib", "folders": ["books"]}
    page = {"folder": "books", "page": 0, "counts": {"deleted": 1, "seen": 9}}
    events = [
        ProjectedEvent(1, PULL, 1, "PullStarted", at, started),
        ProjectedEvent(2, PULL, 2, "PullPageProcessed", at, page),
    ]
    tables = MemoryTables()
    project(tables, events)
    row = tables.pulls[PULL]
    assert (row.scope, row.state, row.created, row.deleted) == (
        {"folders": ["books"]},
        "running",
        0,
        1,
    )


def test_projection_logic_imports_no_infrastructure() -> None:
    allowed = (
        "application",
        "domain",
        "eventsourcing.domain",
        "eventsourcing.persistence",
        "__future__",
        "abc",
        "collections",
        "dataclasses",
        "typing",
        "uuid",
        "json",
        "msgspec",  # a codec, like json: decoding stored events is the rebuild's hot path
    )
    memory_adapters = ("threading", "datetime", "contextlib")  # the in-memory views' lock, clock
    for path in pathlib.Path("application/projections").rglob("*.py"):
        ok = allowed + memory_adapters if "memory" in path.parts else allowed
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module.startswith(ok), f"{path}: {node.module}"
            elif isinstance(node, ast.Import):
                assert all(a.name.startswith(ok) for a in node.names), path
