"""What the in-memory views add to the read port's contract: no waiting, and one catch-up at a time.

(Their answers are the PostgreSQL views' answers: see
``tests/integration/test_views_contract.py``.)
"""

from __future__ import annotations

import threading
from typing import Any, cast

import pytest
from eventsourcing.persistence import ApplicationRecorder

from application.app import PublishdApplication
from application.projections import PROJECTION_NAMES
from application.projections.memory.views import MemoryViews
from tests.support.library import SCHEMAS, USER, WORKSPACE, memory_app


def test_a_read_sees_every_write_saved_before_it() -> None:
    app = memory_app()
    app.create_workspace(WORKSPACE, {"type": "memory"})
    app.register_schema(WORKSPACE, "books", SCHEMAS["books"])
    views = app.views
    assert all(views.position(name) == 0 for name in PROJECTION_NAMES)

    app.write_draft_file(WORKSPACE, USER, "books/war.json", {"title": "War"})

    assert views.position("draft_files") == 0  # nothing read yet, nothing applied
    assert views.draft_files(WORKSPACE, USER) == {"books/war.json": {"title": "War"}}
    assert all(views.position(name) == app.head() for name in PROJECTION_NAMES)
    assert views.position("no_such_projection") == 0


def test_views_read_no_log_until_they_follow_one() -> None:
    with pytest.raises(RuntimeError, match="follow"):
        MemoryViews().main_contents(WORKSPACE, ["books/war.json"])


class RacingLog:
    """A notification log that, once armed, holds its first reader until a second one
    comes in (or a tenth of a second passes): two catch-ups that may overlap, will."""

    def __init__(self, recorder: Any) -> None:
        self.recorder = recorder
        self.readers = 0
        self.most_readers = 0
        self.held = True
        self.guard = threading.Lock()
        self.second = threading.Event()

    def arm(self) -> None:
        self.second.clear()
        self.held = False

    def select_notifications(self, *args: Any, **kwargs: Any) -> Any:
        with self.guard:
            self.readers += 1
            self.most_readers = max(self.most_readers, self.readers)
            first, self.held = not self.held, True
        if first:
            self.second.wait(0.1)
        else:
            self.second.set()
        try:
            return self.recorder.select_notifications(*args, **kwargs)
        finally:
            with self.guard:
                self.readers -= 1


def test_readers_in_two_threads_apply_each_event_once() -> None:
    """Counts are deltas: an event applied by two racing catch-ups would count twice."""
    views = MemoryViews()
    app = PublishdApplication({"PERSISTENCE_MODULE": "eventsourcing.popo"}, views=views)
    log = RacingLog(app.recorder)
    views.follow(cast(ApplicationRecorder, log))
    app.create_workspace(WORKSPACE, {"type": "memory"})
    app.register_schema(WORKSPACE, "books", SCHEMAS["books"])
    app.write_draft_file(WORKSPACE, USER, "books/war.json", {"title": "War"})
    app.write_draft_file(WORKSPACE, USER, "books/peace.json", {"title": "Peace"})
    pipeline = app.plan(WORKSPACE, USER)
    app.request_cancel(pipeline.pipeline_id)
    log.arm()  # the plan and the cancel are not applied yet

    readers = [
        threading.Thread(target=views.pipeline_status, args=(pipeline.pipeline_id,))
        for _ in range(2)
    ]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(timeout=10)

    assert log.most_readers == 1
    status = views.pipeline_status(pipeline.pipeline_id)
    assert status is not None and status["state"] == "cancelled"
    assert status["counts"]["create"]["planned"] == 2
