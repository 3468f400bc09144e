"""bench.reliability's other faults: a zombie worker, and PostgreSQL restarted mid-run.

Both reuse a SIGKILL trial's set-up and checks (``bench.reliability``): a
fresh sandbox with latency, a workspace pulled from it, a draft with every
kind of work, and the sandbox's records compared with the plan at the end.

- **Zombie**: the worker process is SIGSTOPped once the sandbox has seen a
  random number of its requests, and left stopped past its lease; a second
  worker takes the run over and finishes it; then the first is SIGCONTed, with
  its calls and saves still in hand. It must record nothing (the pipeline's
  version stays where the second worker left it) and send nothing new (the
  sandbox sees no request from it): ``zombie_writes`` counts both.
- **Database restart**: PostgreSQL (an embedded server this bench owns: the
  shared one cannot be stopped) is stopped with a fast shutdown once the
  sandbox has seen a random number of the worker's requests, kept down for a
  random 0.5-3 s, and started again; the same worker must finish the run by
  itself. ``db_restart_unfinished`` counts the trials that did not end
  ``completed`` with every check passed.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from bench.reliability import (
    LEASE_SECONDS,
    Sandbox,
    Shape,
    TrialResult,
    check,
    lab,
    sandbox,
    setup_main,
    wait_until,
    worker_process,
    write_draft,
)
from domain.states import TERMINAL_STATES
from infrastructure.postgres.database import Database, embedded, embedded_stopped, stop_embedded
from interfaces.bootstrap import Runtime

OBSERVE_SECONDS = 2 * LEASE_SECONDS + 1.0
"""How long a SIGCONTed zombie is watched: past a lease renewal and a poll or two."""


def _prepare(
    runtime: Runtime, box: Sandbox, shape: Shape, latency_ms: float, number: int, kind: str
) -> tuple[str, dict[str, str], str, TrialResult]:
    """A workspace, its pulled records' ids, and a pipeline whose run is requested."""
    workspace = f"{kind}-{number}-{uuid.uuid4().hex[:6]}"
    ids = setup_main(runtime, box, workspace, shape)
    write_draft(runtime, workspace, shape)
    pipeline = runtime.app.plan(workspace, "alice")
    box.call("DELETE", "/_admin/stats")
    box.call("PUT", "/_admin/faults", json={"latency_ms": latency_ms})
    runtime.app.request_run(pipeline.pipeline_id)
    return workspace, ids, str(pipeline.pipeline_id), TrialResult(entries=len(pipeline.entries))


def _state(runtime: Runtime, pipeline_id: str) -> str:
    """The pipeline's state; ``unavailable`` while the database is still coming back."""
    try:
        return str(runtime.app.pipeline(pipeline_id).state)
    except Exception:  # the first reads after a restart may still find it away
        return "unavailable"


def zombie_trial(
    runtime: Runtime,
    database: Database,
    schema: str,
    shape: Shape,
    rng: random.Random,
    latency_ms: float,
    number: int,
) -> tuple[TrialResult, int]:
    """One zombie trial: its result and the zombie's writes (events + requests) after SIGCONT."""
    started = time.monotonic()
    with sandbox(latency_ms) as box:
        prepared = _prepare(runtime, box, shape, latency_ms, number, "zombie")
        workspace, ids, pipeline_id, result = prepared
        stop_after = rng.randint(1, 6)
        with worker_process(database, schema, f"zombie-{number}") as zombie:
            wait_until(
                lambda: box.requests() >= stop_after or zombie.poll() is not None,
                60,
                f"{stop_after} sandbox requests",
            )
            zombie.send_signal(signal.SIGSTOP)
            try:
                result.calls_before_kill = box.requests()
                result.interrupted = _state(runtime, pipeline_id) not in TERMINAL_STATES
                wait_until(
                    lambda: runtime.app.pipeline(pipeline_id).lease_expired(datetime.now(UTC)),
                    30,
                    "the zombie's lease to expire",
                )
                with worker_process(database, schema, f"heir-{number}"):
                    wait_until(
                        lambda: _state(runtime, pipeline_id) in TERMINAL_STATES,
                        120,
                        f"pipeline {pipeline_id} to end",
                    )
                version = runtime.app.pipeline(pipeline_id).version
                requests = box.requests()
            finally:
                zombie.send_signal(signal.SIGCONT)
            deadline = time.monotonic() + OBSERVE_SECONDS
            while time.monotonic() < deadline and zombie.poll() is None:
                time.sleep(0.05)  # watching for something that must not happen: a fixed window
            writes = (runtime.app.pipeline(pipeline_id).version - version) + (
                box.requests() - requests
            )
        box.call("PUT", "/_admin/faults", json={"latency_ms": 0})
        check(runtime, box, workspace, shape, ids, pipeline_id, result)
    result.seconds = time.monotonic() - started
    return result, writes


def db_restart_trial(
    runtime: Runtime,
    database: Database,
    schema: str,
    data_dir: Path,
    shape: Shape,
    rng: random.Random,
    latency_ms: float,
    number: int,
) -> TrialResult:
    """One trial with PostgreSQL stopped mid-run and started again; the worker must finish it."""
    started = time.monotonic()
    with sandbox(latency_ms) as box:
        prepared = _prepare(runtime, box, shape, latency_ms, number, "restart")
        workspace, ids, pipeline_id, result = prepared
        stop_after = rng.randint(1, 6)
        down_for = rng.uniform(0.5, 3.0)
        with worker_process(database, schema, f"through-{number}") as worker:
            wait_until(
                lambda: box.requests() >= stop_after or worker.poll() is not None,
                60,
                f"{stop_after} sandbox requests",
            )
            result.interrupted = _state(runtime, pipeline_id) not in TERMINAL_STATES
            with embedded_stopped(data_dir):
                result.calls_before_kill = box.requests()
                time.sleep(down_for)  # the outage itself: how long the database stays away
            wait_until(
                lambda: (
                    _state(runtime, pipeline_id) in TERMINAL_STATES or worker.poll() is not None
                ),
                120,
                f"pipeline {pipeline_id} to end after the restart",
            )
            if worker.poll() is not None:
                result.problems.append(f"the worker exited ({worker.returncode}) on the outage")
        box.call("PUT", "/_admin/faults", json={"latency_ms": 0})
        check(runtime, box, workspace, shape, ids, pipeline_id, result)
    result.seconds = time.monotonic() - started
    return result


def run_zombie_trials(
    database: Database,
    schema: str,
    trials: int,
    shape: Shape,
    latency_ms: float,
    seed: int,
    report: Callable[[int, TrialResult, int], None] = lambda n, r, w: None,
) -> list[tuple[TrialResult, int]]:
    rng = random.Random(seed)
    results = []
    with lab(database, schema) as runtime:
        for number in range(trials):
            found = zombie_trial(runtime, database, schema, shape, rng, latency_ms, number)
            report(number, *found)
            results.append(found)
    return results


@contextlib.contextmanager
def restartable_database() -> Iterator[tuple[Database, Path]]:
    """An embedded PostgreSQL this bench may stop, in a temporary directory."""
    data_dir = Path(tempfile.mkdtemp(prefix="publishd-bench-restart-"))
    try:
        yield embedded(data_dir), data_dir
    finally:
        stop_embedded(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


def run_db_restart_trials(
    trials: int,
    shape: Shape,
    latency_ms: float,
    seed: int,
    report: Callable[[int, TrialResult], None] = lambda n, r: None,
) -> list[TrialResult]:
    rng = random.Random(seed)
    results = []
    schema = "bench_restart"
    with restartable_database() as (database, data_dir), lab(database, schema) as runtime:
        for number in range(trials):
            result = db_restart_trial(
                runtime, database, schema, data_dir, shape, rng, latency_ms, number
            )
            report(number, result)
            results.append(result)
    return results
