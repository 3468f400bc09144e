"""A pull's worker process killed with SIGKILL mid-pull; another resumes it; the counts are right.

Real ``publishd worker`` subprocesses on this test's schema (lease of 2 s), a
real sandbox subprocess with latency so that the pull is between calls when
the kill lands, SIGKILL once the sandbox has seen a random number of the
pull's requests, then a second worker that takes the pull over after the
lease. Upstream, since main was last pulled, records were created, edited and
deleted: the resumed pull must count each record once, remove only what the
service no longer has, and leave main equal to the service.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass

import pytest

from bench.reliability import Sandbox, kill_after_requests, lab, wait_until, worker_process
from bench.run import sandbox_process
from infrastructure.postgres.database import Database
from interfaces.bootstrap import Runtime

pytestmark = pytest.mark.timeout(240)

AUTHORS, BOOKS = 150, 250
"""Two and three pages of the sandbox connector's 100."""
NEW_AUTHORS, EDITED_AUTHORS, EDITED_BOOKS, DELETED_BOOKS = 30, 10, 40, 20
EXPECTED = {
    "created": NEW_AUTHORS,
    "updated": EDITED_AUTHORS + EDITED_BOOKS,
    "unchanged": AUTHORS - EDITED_AUTHORS + BOOKS - EDITED_BOOKS - DELETED_BOOKS,
    "deleted": DELETED_BOOKS,
}
PULL_REQUESTS = 2 + 3 + DELETED_BOOKS
"""Listing pages of 180 authors and 230 books, then one read per record gone upstream."""
KILL_AFTER = (1, 4, 3 + 2 + DELETED_BOOKS // 2)
"""In the authors' listing, in the books' listing, amid the reads of the books gone upstream."""


@dataclass
class Trial:
    kill_after: int
    seen_at_kill: int
    interrupted: bool
    state: str
    counts: dict[str, int]
    claims: list[tuple[str, str | None]]
    pages: list[tuple[str, int]]


def seed(box: Sandbox) -> None:
    for name in ("authors", "books"):
        box.call("PUT", f"/collections/{name}", json={"referenceFields": {}})
    for a in range(AUTHORS):
        box.create("authors", {"name": f"Author {a}", "slug": f"author-{a}"})
    for b in range(BOOKS):
        box.create("books", {"title": f"Book {b}", "slug": f"book-{b}"})


def change_upstream(box: Sandbox) -> None:
    authors, books = box.items("authors"), box.items("books")
    for item in authors[:EDITED_AUTHORS]:
        box.call(
            "PATCH", f"/collections/authors/items/{item['id']}", json={"fieldData": {"bio": "new"}}
        )
    for a in range(NEW_AUTHORS):
        box.create("authors", {"name": f"New author {a}", "slug": f"new-author-{a}"})
    for item in books[::6][:EDITED_BOOKS]:
        box.call(
            "PATCH", f"/collections/books/items/{item['id']}", json={"fieldData": {"pages": 7}}
        )
    gone = [item["id"] for item in books[1::6][:DELETED_BOOKS]]
    box.call("DELETE", "/collections/books/items", json={"items": gone})


def run_trial(runtime: Runtime, database: Database, schema: str, kill_after: int) -> Trial:
    app, workspace = runtime.app, f"pull-{uuid.uuid4().hex[:8]}"
    with sandbox_process(quiet=True) as url:
        box = Sandbox(url)
        try:
            seed(box)
            app.create_workspace(workspace, {"type": "sandbox", "base_url": url})
            for folder in ("authors", "books"):
                app.register_schema(workspace, folder, {"fields": []})
            first = app.start_pull(workspace, None)
            with worker_process(database, schema, f"first-{workspace}"):
                wait_until(lambda: app.pull(first.pull_id).state != "running", 60, "first pull")
            change_upstream(box)
            box.call("DELETE", "/_admin/stats")
            box.call("PUT", "/_admin/faults", json={"latency_ms": 30})
            pull_id = app.start_pull(workspace, None).pull_id
            alive = kill_after_requests(database, schema, f"doomed-{workspace}", box, kill_after)
            seen_at_kill = box.requests()
            interrupted = alive and app.pull(pull_id).state == "running"
            with worker_process(database, schema, f"resumer-{workspace}"):
                wait_until(lambda: app.pull(pull_id).state != "running", 120, "the resumed pull")
            box.call("PUT", "/_admin/faults", json={})
            check_main(runtime, box, workspace)
        finally:
            box.close()
    pull = app.pull(pull_id)
    events = list(app.events.get(pull.id))
    claims = [
        (str(getattr(e, "worker", "")), getattr(e, "previous", None))
        for e in events
        if type(e).__name__ == "PullClaimed"
    ]
    pages = [
        (str(getattr(e, "folder", "")), int(getattr(e, "page", -1)))
        for e in events
        if type(e).__name__ == "PullPageProcessed"
    ]
    return Trial(
        kill_after, seen_at_kill, interrupted, pull.state, dict(pull.counts), claims, pages
    )


def check_main(runtime: Runtime, box: Sandbox, workspace: str) -> None:
    """Main holds every record of the service, once, as the service holds it, and nothing else."""
    runtime.app.catch_up()
    for folder in ("authors", "books"):
        upstream = {item["id"]: item for item in box.items(folder)}
        index = runtime.views.main_folder_index(workspace, folder)
        assert set(index) == set(upstream), folder
        filenames = Counter(filename for filename, _ in index.values())
        assert max(filenames.values()) == 1, folder
        for record_id, (_, content) in index.items():
            fields = upstream[record_id]["fieldData"]
            assert {k: content.get(k) for k in fields} == fields, (folder, record_id)


def test_a_killed_pull_worker_is_resumed_and_counts_each_record_once(
    database: Database, schema: str
) -> None:
    with lab(database, schema) as runtime:
        trials = [run_trial(runtime, database, schema, kill) for kill in KILL_AFTER]

    for trial in trials:
        assert trial.interrupted, trial  # the kill found a live worker mid-pull
        assert trial.state == "completed", trial
        assert trial.counts == EXPECTED, trial
        (doomed, _), (resumer, previous) = trial.claims[0], trial.claims[-1]
        assert doomed.startswith("doomed-") and resumer.startswith("resumer-"), trial.claims
        assert previous == doomed, trial.claims  # taken over from the dead worker's lease
        assert len(trial.pages) == len(set(trial.pages)), trial.pages  # no page twice
