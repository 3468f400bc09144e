"""The run engine's rounds, on the in-memory event store with a checking fake connector.

The crash-safety rule the rounds exist for: every call is sent only after the
intent naming its idempotency key is in the event store, so a worker that dies
mid-call leaves a trace that resume reconciles. And the speed rule: calls do
not wait for the save of a later round, so a fast service keeps all
``concurrency`` slots busy while rounds save.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from application.app import PublishdApplication
from application.connector import Connector, Record, RecordPage
from application.runner import PipelineRun
from domain.pipeline import E_DISPATCHED, PublishPipeline
from domain.plan import PlanEntry
from domain.workspace import Workspace

WORKER = "worker-1"
CONCURRENCY = 4
ENTRIES = 60


class CheckingConnector(Connector):
    """Creates records in memory; before each, checks the store holds its intent."""

    def __init__(self, app: PublishdApplication, pipeline_id: str) -> None:
        self.app = app
        self.pipeline_id = pipeline_id
        self.calls: list[str] = []
        self.unannounced: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.release = asyncio.Event()
        """Calls hold until set: lets a test keep calls in flight while a round saves."""
        self.release.set()

    def _intent_stored(self, idempotency_key: str) -> bool:
        stored = self.app.load(self.pipeline_id, PublishPipeline)
        assert stored is not None
        return any(
            entry["idempotency_key"] == idempotency_key and entry["status"] == E_DISPATCHED
            for entry in stored.entries.values()
        )

    async def create(self, folder: str, fields: dict[str, Any], idempotency_key: str) -> Record:
        if not self._intent_stored(idempotency_key):
            self.unannounced.append(idempotency_key)
        self.calls.append(idempotency_key)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.release.wait()
            await asyncio.sleep(0)  # yield, as a real call would
        finally:
            self.in_flight -= 1
        return Record(id=f"r-{len(self.calls)}", field_data=dict(fields))

    async def update(
        self, folder: str, record_id: str, fields: dict[str, Any], idempotency_key: str
    ) -> Record:
        raise AssertionError("no updates in this plan")

    async def delete_many(self, folder: str, record_ids: list[str], idempotency_key: str) -> None:
        raise AssertionError("no deletes in this plan")

    async def list_page(self, folder: str, offset: int, limit: int) -> RecordPage:
        raise AssertionError("the run never lists")


def queued_pipeline(app: PublishdApplication) -> PublishPipeline:
    """A workspace with a ``books`` folder and a running pipeline of ENTRIES creates."""
    app.create_workspace("ws", {"type": "fake"})
    app.register_schema("ws", "books", {})
    workspace = app.workspace("ws")
    pipeline = PublishPipeline(
        pipeline_id=str(uuid.uuid4()),
        workspace_id="ws",
        user="u",
        main_version=workspace.main_version,
        draft_version=0,
        phases=[{"phase": "create", "entries": ENTRIES}],
    )
    pipeline.plan_entries(
        [
            PlanEntry(
                f"books/b{n:03}.json",
                "create",
                {"type": "create", "folder": "books", "fields": {"n": n}},
            )
            for n in range(ENTRIES)
        ]
    )
    pipeline.request_run()
    workspace.acquire_publish_lock(pipeline.pipeline_id)
    app.save_all(pipeline, workspace)
    return pipeline


def run(app: PublishdApplication, connector: CheckingConnector, pipeline: PublishPipeline) -> str:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    pipeline.claim(WORKER, now, timedelta(seconds=30))
    app.save_all(pipeline)

    def connector_for(_: Workspace) -> Connector:
        return connector

    pipeline_run = PipelineRun(
        app,
        pipeline,
        WORKER,
        connector_for,
        clock=lambda: now,
        lease=timedelta(seconds=30),
        concurrency=CONCURRENCY,
    )
    state = asyncio.run(pipeline_run.execute())
    assert state is not None
    return state


def test_every_call_goes_out_after_its_intent_is_stored() -> None:
    app = PublishdApplication()
    pipeline = queued_pipeline(app)
    connector = CheckingConnector(app, pipeline.pipeline_id)

    assert run(app, connector, pipeline) == "completed"

    assert connector.unannounced == []
    assert len(connector.calls) == len(set(connector.calls)) == ENTRIES
    assert 1 < connector.most_in_flight <= CONCURRENCY
    done = app.pipeline(pipeline.pipeline_id)
    assert done.phase_counts("create")["published"] == ENTRIES
    assert app.workspace("ws").publishing is None


def test_calls_keep_going_while_a_round_saves() -> None:
    """While a round saves, a second window of calls goes out.

    The first round (the intents of the first windows) saves at once; the
    next round's save then blocks until a second window of calls has been
    sent. With intents saved only one window ahead, those calls could not
    start before that save: the wait times out and the run fails. With
    ``WINDOWS_AHEAD`` = 2 they go out while the round saves.
    """
    app = PublishdApplication()
    pipeline = queued_pipeline(app)
    connector = CheckingConnector(app, pipeline.pipeline_id)
    second_window = 2 * CONCURRENCY
    enough_calls = threading.Event()
    saves = 0
    save_all = app.save_all

    def gated_save_all(*aggregates: Any) -> int:
        nonlocal saves
        saves += 1
        if saves == 4:  # claim, phase start, first round's intents, then this one
            assert enough_calls.wait(timeout=5), "calls stopped while a round saved"
        return save_all(*aggregates)

    async def create(folder: str, fields: dict[str, Any], key: str) -> Record:
        record = await CheckingConnector.create(connector, folder, fields, key)
        if len(connector.calls) >= second_window:
            enough_calls.set()
        return record

    app.save_all = gated_save_all  # type: ignore[method-assign]
    connector.create = create  # type: ignore[method-assign]

    assert run(app, connector, pipeline) == "completed"
    assert connector.unannounced == []
    assert len(connector.calls) == ENTRIES
