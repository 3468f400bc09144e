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
from application.connector import Connector, Record
from application.runner import PipelineRun
from domain.pipeline import PublishPipeline
from domain.plan import PlanEntry
from domain.workspace import Workspace
from tests.support.connectors import CheckingConnector

WORKER = "worker-1"
CONCURRENCY = 4
ENTRIES = 60


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
    pipeline.request_run(main_version=workspace.main_version, draft_version=0)
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
