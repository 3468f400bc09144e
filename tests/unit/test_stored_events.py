"""The stored events keep their JSON: old streams replay, and new events read like old ones.

``golden/stored_events.json`` was recorded by the code before the domain got
typed states and entries (commit 5f4003b), from the lifecycle below: every
event type of every aggregate. Each event's state is compared as JSON, less
its timestamp. Events have grown since, only by fields with defaults (so the
old events still replay) and by new kinds of event: both are listed here, so
that a change to what an event stores is always a decision someone wrote down.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import StoredEvent

from application.app import PublishdApplication
from domain.draft import Draft
from domain.entries import EntryStatus
from domain.pipeline import PublishPipeline
from domain.plan import Phase, PlanEntry
from domain.pull import Pull
from domain.schema import FolderSchema
from domain.states import PipelineState
from domain.workspace import MainChange, Workspace

GOLDEN = Path(__file__).parent / "golden" / "stored_events.json"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
LEASE = timedelta(seconds=30)
W = "worker-1"
PID = "00000000-0000-4000-8000-000000000001"
PULL_ID = "00000000-0000-4000-8000-000000000002"
STALE_ID = "00000000-0000-4000-8000-000000000003"
ENTRIES = [
    PlanEntry(
        "books/a.json",
        Phase.EDIT,
        {"type": "update", "folder": "books", "record_id": "r1", "fields": {"t": 1}},
    ),
    PlanEntry(
        "books/b.json",
        Phase.CREATE,
        {"type": "create", "folder": "books", "fields": {"t": 2}},
        ("author",),
    ),
    PlanEntry(
        "books/c.json",
        Phase.DELETE,
        {"type": "delete", "folder": "books", "record_id": "r3", "page": 0},
    ),
    PlanEntry(
        "books/b.json",
        Phase.BACKFILL,
        {
            "type": "update",
            "folder": "books",
            "record_id": None,
            "fields": {"author": "@/authors/x.json"},
        },
        (),
        ("create:books/b.json",),
    ),
]


def lifecycle() -> list[Aggregate]:
    ws = Workspace(workspace_id="ws", connector={"type": "sandbox", "base_url": "http://x/"})
    schema = {"fields": [{"name": "author", "referenceTarget": "authors"}], "filenameFrom": "slug"}
    ws.register_schema(FolderSchema.from_dict("books", schema))
    ws.change_connector({"type": "sandbox", "base_url": "http://y/"})
    draft = Draft(workspace_id="ws", user="u")
    draft.write_file("books/a.json", {"t": 1})
    draft.write_file("books/b.json", {"t": 2, "author": "@/authors/x.json"})
    draft.delete_file("books/c.json", on_main=True)
    p = PublishPipeline(
        pipeline_id=PID,
        workspace_id="ws",
        user="u",
        main_version=0,
        draft_version=draft.version,
        phases=[{"phase": phase, "entries": 1} for phase in Phase],
    )
    p.plan_entries(ENTRIES)
    p.request_run(main_version=0, draft_version=draft.version)
    ws.acquire_publish_lock(PID)
    p.claim(W, NOW, LEASE)
    p.claim(W, NOW + LEASE / 4, LEASE)
    p.start_phase(W, Phase.EDIT)
    p.dispatch(W, "edit:books/a.json", "k1")
    v = ws.change_main(f"pipeline:{PID}", [MainChange("books/a.json", {"id": "r1", "t": 1}, "r1")])
    p.publish_entry(W, "edit:books/a.json", "r1", {"id": "r1", "t": 1}, v)
    p.complete_phase(W, Phase.EDIT)
    p.start_phase(W, Phase.CREATE)
    p.dispatch(W, "create:books/b.json", "k2")
    p.fail_entry(W, "create:books/b.json", "400: bad")
    p.complete_phase(W, Phase.CREATE)
    p.start_phase(W, Phase.DELETE)
    p.dispatch(W, "delete:books/c.json", "k3")
    v = ws.change_main(f"pipeline:{PID}", [MainChange("books/c.json", None, "r3")])
    p.publish_entry(W, "delete:books/c.json", "r3", None, v)
    p.complete_phase(W, Phase.DELETE)
    p.start_phase(W, Phase.BACKFILL)
    p.skip_entry(W, "backfill:books/b.json", "depends on create:books/b.json, which failed")
    p.complete_phase(W, Phase.BACKFILL)
    p.finish(W)
    ws.release_publish_lock(PID)
    draft.rebase(PID, p.published_paths(), dict(draft.changes))
    p.request_retry(main_version=p.last_main_version)
    p.claim("worker-2", NOW + 3 * LEASE, LEASE)
    p.request_cancel()
    p.confirm_cancel("worker-2")
    ws.mark_seen("pull:x", "books", ["r1"])
    pull = Pull(pull_id=PULL_ID, workspace_id="ws", folders=["books"])
    pull.claim(W, NOW, LEASE)
    pull.record_page(W, "books", 0, {"created": 1}, offset=0, listed=["r1"], done=True)
    pull.complete(W)
    stale = PublishPipeline(
        pipeline_id=STALE_ID,
        workspace_id="ws",
        user="u",
        main_version=0,
        draft_version=1,
        phases=[{"phase": "edit", "entries": 1}],
    )
    stale.plan_entries(ENTRIES[:1])
    stale.mark_stale("main moved")
    draft.discard()
    return [ws, draft, p, pull, stale]


def _originator(aggregate: Aggregate) -> str:
    return (
        type(aggregate).__name__ if isinstance(aggregate, Workspace | Draft) else str(aggregate.id)
    )


ADDED_FIELDS = {
    # issue 12: upstream changes, durable pulls
    "EntryPlanned": {"before"},
    "EntryFailed": {"code", "details"},
    "PullStarted": {"scope"},
    "PullPageProcessed": {"offset", "listed", "done"},
    # issue 18: log lines and status carry the trace of the request that planned
    "PipelinePlanned": {"on_upstream_change", "trace_id"},
}
"""Fields an event has gained since the golden file, each with a default in its apply-method."""

NEW_EVENTS = {"PullClaimed", "PullLeaseRenewed", "CallDispatched"}
"""Kinds of event the golden lifecycle did not record."""


def test_every_event_is_stored_as_the_code_before_stored_it() -> None:
    app = PublishdApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    recorded: list[dict[str, Any]] = []
    for aggregate in lifecycle():
        for domain_event in aggregate.collect_events():
            stored = app.mapper.to_stored_event(domain_event)
            name = stored.topic.rpartition(".")[2]
            if name in NEW_EVENTS:
                continue
            state = json.loads(stored.state)
            state.pop("timestamp")
            added = ADDED_FIELDS.get(name, set())
            assert added <= state.keys(), (name, added - state.keys())
            recorded.append(
                {
                    "originator": _originator(aggregate),
                    "topic": stored.topic,
                    "state": {k: v for k, v in state.items() if k not in added},
                }
            )
    golden = [
        {k: v for k, v in e.items() if k != "version"} for e in json.loads(GOLDEN.read_text())
    ]
    assert recorded == golden


def test_the_old_stream_replays_into_typed_state() -> None:
    app = PublishdApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    pipeline: Aggregate | None = None
    for event in json.loads(GOLDEN.read_text()):
        if event["originator"] != PID:
            continue
        state = event["state"] | {
            "timestamp": {"_type_": "datetime_iso", "_data_": NOW.isoformat()}
        }
        stored = StoredEvent(
            originator_id=UUID(PID),
            originator_version=event["version"],
            topic=event["topic"],
            state=json.dumps(state).encode(),
        )
        pipeline = app.mapper.to_domain_event(stored).mutate(pipeline)
    assert isinstance(pipeline, PublishPipeline)
    assert pipeline.state is PipelineState.CANCELLED and pipeline.attempt == 1
    assert pipeline.phases == list(Phase)
    assert pipeline.entries["edit:books/a.json"].status is EntryStatus.PUBLISHED
    assert pipeline.entries["create:books/b.json"].status is EntryStatus.PLANNED
    assert pipeline.entries["delete:books/c.json"].record_id == "r3"
    assert pipeline.entries["backfill:books/b.json"].depends_on == ["create:books/b.json"]
    assert pipeline.last_main_version == 2
