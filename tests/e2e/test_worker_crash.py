"""A worker process killed with SIGKILL mid-run; another resumes it; nothing is doubled or lost.

The small version of ``bench.reliability`` (which holds the trial and the
checks): real ``publishd worker`` subprocesses on this test's schema, a real
sandbox subprocess with latency so calls are in flight at the kill, SIGKILL
once the sandbox has seen a random number of the worker's requests, then a
second worker that takes over after the 2 s lease. The sandbox's own records
are compared with the plan and with what the pipeline recorded.
"""

from __future__ import annotations

import pytest

from bench.reliability import Shape, TrialResult, run_trials
from infrastructure.postgres.database import Database

pytestmark = pytest.mark.timeout(240)

TRIALS = 3


def test_killed_workers_are_resumed_without_duplicates_or_lost_outcomes(
    database: Database, schema: str
) -> None:
    shape = Shape(books=8)
    results: list[TrialResult] = run_trials(
        database, schema, TRIALS, shape, latency_ms=30.0, seed=20240611
    )

    assert len(results) == TRIALS
    assert all(r.entries >= 20 for r in results), [r.entries for r in results]
    # every kill landed once the worker was calling, on a live worker, before the run ended
    assert all(r.calls_before_kill >= 1 and r.interrupted for r in results)
    assert [r.problems for r in results] == [[]] * TRIALS
    assert sum(r.duplicate_creates for r in results) == 0
    assert sum(r.lost_outcomes for r in results) == 0
    assert sum(r.unfinished for r in results) == 0
