"""A draft edited while its pipeline runs keeps the edit (API.md §4).

The run publishes what was planned; at the end only the paths whose draft
content is still what the plan saw leave the draft. The sandbox's latency
holds the calls in flight while the user writes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from domain.entries import EntryStatus
from infrastructure.postgres.database import Database
from tests.support.publishing import Harness, harness

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def lib(database: Database, schema: str) -> Iterator[Harness]:
    with harness(database, schema) as h:
        yield h


def wait_until(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def test_a_path_rewritten_during_the_run_stays_in_the_draft(lib: Harness) -> None:
    lib.setup_library()
    old, light = lib.main("books/old-man.json"), lib.main("books/lighthouse.json")
    assert old is not None and light is not None
    lib.write("books/old-man.json", {**old, "title": "Old Man (revised)"})
    lib.write("books/lighthouse.json", {**light, "title": "Lighthouse (revised)"})
    pipeline = lib.app.plan("lib", "alice")
    lib.app.request_run(pipeline.pipeline_id)
    lib.set_faults(latency_ms=1500)
    run = threading.Thread(target=lib.run, args=(pipeline.pipeline_id,))
    run.start()
    try:
        wait_until(
            lambda: any(
                e.status == EntryStatus.DISPATCHED
                for e in lib.app.pipeline(pipeline.pipeline_id).entries.values()
            )
        )
        lib.write("books/old-man.json", {**old, "title": "Old Man (second thoughts)"})
    finally:
        run.join(timeout=60)
    assert not run.is_alive()

    done = lib.app.pipeline(pipeline.pipeline_id)
    assert done.state == "completed", done.counts()
    # the service got what was planned; main took it
    assert lib.item_by("books", "slug", "old-man")["fieldData"]["title"] == "Old Man (revised)"
    assert lib.main("books/old-man.json")["title"] == "Old Man (revised)"  # type: ignore[index]
    # the later edit stays as a change against the new main; the untouched path left
    assert lib.queries.draft_changes("lib", "alice")["changes"] == [
        {"path": "books/old-man.json", "change": "modified"}
    ]
    content = lib.queries.read_file("lib", "books/old-man.json", "alice")
    assert content["title"] == "Old Man (second thoughts)"
