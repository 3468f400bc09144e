"""No runnable pipeline or pull waits behind others forever.

The worker looks at one window of running pipelines (and pulls) per poll. The
oldest ones here are held by another worker's live lease, more of them than
fit in a window: a worker that always looked at the oldest window would find
nothing to do, forever. Each newer runnable pipeline and pull must be run, and
the held ones left alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from application.worker import Worker
from domain.states import PipelineState
from infrastructure.postgres.database import Database
from tests.support.publishing import Harness, harness

pytestmark = pytest.mark.timeout(120)

WINDOW = 4
HELD = 2 * WINDOW + 1  # of each kind: more than two windows of work nobody may take
RUNNABLE = 2 * WINDOW + 2
BOUND_S = 60.0


@pytest.fixture
def lib(database: Database, schema: str) -> Iterator[Harness]:
    with harness(database, schema) as h:
        h.sandbox("PUT", "/collections/books", json={"referenceFields": {}})
        yield h


def now() -> datetime:
    return datetime.now(UTC)


def new_pipeline(lib: Harness, n: int) -> str:
    workspace = f"fair-p{n}"
    lib.app.create_workspace(workspace, {"type": "sandbox", "base_url": lib.sandbox_url})
    lib.app.register_schema(workspace, "books", {})
    lib.app.write_draft_file(workspace, "alice", f"books/b{n}.json", {"slug": f"fair-{n}"})
    pipeline = lib.app.plan(workspace, "alice")
    lib.app.request_run(pipeline.pipeline_id)
    return str(pipeline.pipeline_id)


def new_pull(lib: Harness, n: int) -> str:
    workspace = f"fair-q{n}"
    lib.app.create_workspace(workspace, {"type": "sandbox", "base_url": lib.sandbox_url})
    lib.app.register_schema(workspace, "books", {})
    return str(lib.app.start_pull(workspace, None).pull_id)


def hold_pipeline_elsewhere(lib: Harness, pipeline_id: str) -> None:
    """Another (live) worker's lease, for an hour."""
    held = lib.app.pipeline(pipeline_id)
    held.claim("elsewhere", now(), timedelta(hours=1))
    lib.app.save_all(held)


def hold_pull_elsewhere(lib: Harness, pull_id: str) -> None:
    held = lib.app.pull(pull_id)
    held.claim("elsewhere", now(), timedelta(hours=1))
    lib.app.save_all(held)


def test_every_runnable_pipeline_and_pull_runs_behind_windows_of_held_ones(lib: Harness) -> None:
    held_pipelines = [new_pipeline(lib, n) for n in range(HELD)]
    held_pulls = [new_pull(lib, n) for n in range(HELD)]
    for pipeline_id in held_pipelines:
        hold_pipeline_elsewhere(lib, pipeline_id)
    for pull_id in held_pulls:
        hold_pull_elsewhere(lib, pull_id)
    pipelines = [new_pipeline(lib, n) for n in range(HELD, HELD + RUNNABLE)]
    pulls = [new_pull(lib, n) for n in range(HELD, HELD + RUNNABLE)]
    lib.app.catch_up()
    running = lib.runtime.views.runnable_pipelines(1000)
    assert running[: len(held_pipelines)] == sorted(held_pipelines, key=running.index)
    assert set(running) == set(held_pipelines + pipelines)  # the held ones are the oldest

    def finished() -> bool:
        done = [lib.app.pipeline(p).state == PipelineState.COMPLETED for p in pipelines]
        return all(done) and all(lib.app.pull(p).state == "completed" for p in pulls)

    async def serve() -> float:
        worker = Worker(
            lib.app,
            lib.runtime.connector_for,
            clock=now,
            lease=timedelta(seconds=15),
            concurrency=4,
            poll_interval=0.05,
            max_pipelines=3,
            max_pulls=2,
            window=WINDOW,
        )
        stop = asyncio.Event()
        serving = asyncio.create_task(worker.serve(stop))
        started = time.monotonic()
        try:
            while not await asyncio.to_thread(finished):
                assert time.monotonic() - started < BOUND_S, "some runnable work never ran"
                await asyncio.sleep(0.05)
            return time.monotonic() - started
        finally:
            stop.set()
            await serving
            await lib.runtime.aclose_connectors()

    took = asyncio.run(serve())

    assert took < BOUND_S
    for pipeline_id in held_pipelines:  # left to their holder
        held = lib.app.pipeline(pipeline_id)
        assert (held.state, held.lease_owner) == (PipelineState.RUNNING, "elsewhere")
    for pull_id in held_pulls:
        pull = lib.app.pull(pull_id)
        assert (pull.state, pull.lease_owner) == ("running", "elsewhere")
    created = {i["fieldData"]["slug"] for i in lib.all_items("books")}
    assert created == {f"fair-{n}" for n in range(HELD, HELD + RUNNABLE)}
