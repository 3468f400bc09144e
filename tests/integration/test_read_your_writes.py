"""A read of one pipeline (or of main) waits for that aggregate's events only.

Reads that must see their own writes wait for the projections. Waiting for the
global head made every status poll and every plan wait for whatever anyone else
had just saved: under twenty clients planning at once, for the projections to
digest all their plans. Here the projections are stopped while another
aggregate's events pile up: reads of a pipeline and plans of main must still
answer at once, and a read of a pipeline whose own event is not projected yet
must still wait for it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

import application.app
from application.queries import Queries
from infrastructure.postgres.database import Database
from infrastructure.settings import Settings
from interfaces.bootstrap import Runtime

pytestmark = pytest.mark.timeout(60)

WS = "rw"


class Projections:
    """The runtime's projections in a thread that the test can stop and start again."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=self.runtime.run_projections, args=(self.stop,), daemon=True
        )
        self.thread.start()

    def halt(self) -> None:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


@pytest.fixture
def runtime(database: Database, schema: str) -> Iterator[tuple[Runtime, Projections]]:
    runtime = Runtime.build(Settings(database_url=database.conninfo, db_schema=schema))
    projections = Projections(runtime)
    projections.start()
    try:
        app = runtime.app
        app.create_workspace(WS, {"type": "sandbox", "base_url": "http://127.0.0.1:9/"})
        app.register_schema(WS, "books", {})
        for user in ("alice", "bob"):
            app.write_draft_file(WS, user, f"books/{user}.json", {"title": user})
        yield runtime, projections
    finally:
        projections.halt()
        runtime.close()


def test_reads_of_one_aggregate_do_not_wait_for_other_aggregates_events(
    runtime: tuple[Runtime, Projections], monkeypatch: pytest.MonkeyPatch
) -> None:
    rt, projections = runtime
    app, queries = rt.app, Queries(rt.app, rt.views)
    planned = app.plan(WS, "alice")
    assert queries.pipeline_status(planned.pipeline_id)["state"] == "planned"

    projections.halt()
    for n in range(30):  # another user's draft: events no read below depends on
        app.write_draft_file(WS, "carol", f"books/c{n}.json", {"title": f"c{n}"})
    assert app.head() > rt.views.position("pipeline_status")
    monkeypatch.setattr(application.app, "READ_TIMEOUT_S", 2.0)

    started = time.monotonic()
    assert queries.pipeline_status(planned.pipeline_id)["state"] == "planned"
    assert len(queries.pipeline_entries(planned.pipeline_id, None, None)) == 1
    again = app.plan(WS, "bob")  # main's views are current: carol's draft is not main
    assert time.monotonic() - started < 1.5  # the global head would have timed out

    # The pipeline's own event is not projected: its status must wait, and says so.
    app.request_cancel(planned.pipeline_id)
    with pytest.raises(TimeoutError):
        queries.pipeline_status(planned.pipeline_id)

    projections.start()
    assert queries.pipeline_status(planned.pipeline_id)["state"] == "cancelled"
    assert len(queries.pipeline_entries(again.pipeline_id, None, None)) == 1
