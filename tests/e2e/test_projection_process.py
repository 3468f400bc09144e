"""A projection process killed with SIGKILL mid-batch resumes exactly at its tracking.

The runner is a real subprocess (``python -m interfaces.cli projections run``).
After the kill the server rolls the open batch back; the next process starts
from the committed tracking position, and the tables end up equal to a rebuild
from scratch (``verify``), with every count exact (counts are deltas, so an
event applied twice would show).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from eventsourcing.application import Application

from domain.pipeline import PublishPipeline
from domain.plan import PlanEntry
from domain.workspace import MainChange, Workspace
from infrastructure.postgres.database import Database
from infrastructure.postgres.projections.verify import verify
from infrastructure.postgres.projections.views import PostgresViews

PIPELINES = 40
ENTRIES = 500


class Store(Application[uuid.UUID]):
    name = "publishd"


@contextmanager
def runner_process(database: Database, schema: str) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "PUBLISHD_DATABASE_URL": database.conninfo, "PUBLISHD_DB_SCHEMA": schema}
    command = [sys.executable, "-m", "interfaces.cli", "projections", "run"]
    process = subprocess.Popen(command, env=env)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def test_killed_runner_resumes_from_its_tracking(database: Database, schema: str) -> None:
    app = Store(env=database.eventsourcing_env(schema, pool_size=2))
    ws = Workspace("crash", {})
    app.save(ws)
    for n in range(PIPELINES):
        pipeline = PublishPipeline(
            str(uuid.uuid4()), "crash", "u", 0, 0, [{"phase": "create", "entries": ENTRIES}]
        )
        pipeline.plan_entries([PlanEntry(f"b/{n}-{i}.json", "create", {}) for i in range(ENTRIES)])
        ws.change_main(
            "run",
            [MainChange(f"b/{n}-{i}.json", {"i": i}, f"r{n}-{i}") for i in range(50)],
        )
        app.save(pipeline, ws)
    head = app.recorder.max_notification_id() or 0
    assert head > 4 * 5000  # several pages to cut through

    views = PostgresViews(database, schema)
    try:
        with runner_process(database, schema) as process:
            assert views.wait_for_position(1, 60, ["pipeline_entries"])
            process.send_signal(signal.SIGKILL)
            process.wait(10)
        stopped_at = views.position("pipeline_entries")
        assert 0 < stopped_at < head, "the kill should land between the first and last page"

        with runner_process(database, schema) as process:
            assert views.wait_for_position(head, 120)
            process.send_signal(signal.SIGTERM)
            assert process.wait(20) == 0
        statuses = views.list_pipelines(workspace="crash", limit=PIPELINES)
        assert len(statuses) == PIPELINES
        assert all(s["counts"]["create"]["planned"] == ENTRIES for s in statuses)
        assert len(views.main_folder_index("crash", "b")) == PIPELINES * 50
        report = verify(database, schema)
        assert report.ok, report.to_json()
    finally:
        views.close()
