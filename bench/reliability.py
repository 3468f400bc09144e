"""Crash safety: workers killed with SIGKILL mid-run, resumed by another, checked on the sandbox.

``python -m bench.reliability [--trials 200] [--zombie-trials 20] [--db-restart-trials 5]
[--books 20]`` (needs ``PUBLISHD_DATABASE_URL``; works in its own schema and drops it).
``BENCH_TRIALS``, ``BENCH_ZOMBIE_TRIALS`` and ``BENCH_DB_RESTART_TRIALS`` set the
defaults (``BENCH_TRIALS=1000`` for the full figure). The zombie and
database-restart trials are in ``bench.reliability_faults``; the restarts run on
an embedded PostgreSQL of their own, since the shared server cannot be stopped.

Each trial gets a fresh sandbox (a subprocess, with latency so that calls are
in flight when the kill lands) and a workspace whose main is pulled from it:
authors, books pointing at authors, menus listing books. The draft mixes
every kind of work: new authors and new books pointing at each other (creates
in two waves, the cycle-breaking pointers backfilled), retitled books, and deleted authors and
books that other records still point at (reference-clearing edits, then
deletes). A worker SUBPROCESS (``publishd worker``, lease of 2 s) runs it and
is killed with SIGKILL once the sandbox has seen a random number of its
requests; a second worker resumes the run after the lease expires.

Then the sandbox's own records are checked:

- ``duplicate_creates``: records beyond the first with one slug (a create sent
  twice under different keys);
- ``lost_outcomes``: writes the sandbox applied whose outcome the pipeline does
  not hold as published (a created record whose id is not the create entry's
  published record id, an edit or delete applied without its entry published);
- ``unfinished``: trials whose pipeline did not end ``completed``;
- ``replayed_calls`` (a figure, not a failure): writes the resume re-sent that the
  sandbox had already applied, answered from its idempotency cache;
- and every reference: new books point at the right new author, new authors
  at the right new book, cleared pointers are null, menus lost exactly the
  deleted books, and publishd's FileIndex holds the sandbox's ids.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from application.queries import Queries
from bench.common import database_from_env, print_result, temporary_schema
from bench.run import sandbox_process
from domain.calls import calls_per_phase
from domain.connector_config import BATCH_LIMITS
from domain.entries import EntryStatus, PipelineEntry
from domain.pipeline import PublishPipeline
from domain.states import TERMINAL_STATES
from infrastructure.postgres.database import Database
from infrastructure.settings import Settings
from interfaces.bootstrap import Runtime

LEASE_SECONDS = 2
COLLECTIONS: dict[str, Any] = {
    "authors": {"favourite_book": {"target": "books", "multiple": False}},
    "books": {"author": {"target": "authors", "multiple": False}},
    "menus": {"items": {"target": "books", "multiple": True}},
}
SCHEMAS: dict[str, Any] = {
    "authors": {
        "fields": [{"name": "favourite_book", "reference": True, "referenceTarget": "books"}]
    },
    "books": {"fields": [{"name": "author", "reference": True, "referenceTarget": "authors"}]},
    "menus": {
        "fields": [
            {"name": "items", "reference": True, "referenceTarget": "books", "multiple": True}
        ]
    },
}


@dataclass(frozen=True)
class Shape:
    """How much of each kind of work one trial's pipeline holds."""

    books: int = 20
    """Existing books; as many new books are created."""

    @property
    def authors(self) -> int:
        return max(4, self.books // 3)

    @property
    def new_authors(self) -> int:
        return max(2, self.books // 2)

    @property
    def edited(self) -> int:
        return max(1, self.books // 3)

    @property
    def deleted_authors(self) -> int:
        return max(1, self.authors // 3)

    @property
    def deleted_books(self) -> int:
        return max(1, self.books // 5)


@dataclass
class TrialResult:
    entries: int = 0
    calls_before_kill: int = 0
    interrupted: bool = False
    """The kill found the worker alive and the pipeline not yet ended."""
    replays: int = 0
    """Writes the resume re-sent under a key the sandbox had already applied."""
    duplicate_creates: int = 0
    lost_outcomes: int = 0
    unfinished: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


class Sandbox:
    """The test's view of one sandbox: its records and counters, over HTTP."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def items(self, collection: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:
            page = self.call(
                "GET",
                f"/collections/{collection}/items",
                params={"offset": len(found), "limit": 100},
            )
            found.extend(page["items"])
            if len(found) >= page["total"] or not page["items"]:
                return found

    def create(self, collection: str, fields: dict[str, Any]) -> str:
        return str(
            self.call("POST", f"/collections/{collection}/items", json={"fieldData": fields})["id"]
        )

    def requests(self) -> int:
        return int(self.call("GET", "/_admin/stats").get("requests", 0))

    def close(self) -> None:
        self.http.close()


@contextmanager
def sandbox(latency_ms: float) -> Iterator[Sandbox]:
    with sandbox_process(quiet=True) as url:
        box = Sandbox(url)
        try:
            for name, fields in COLLECTIONS.items():
                box.call("PUT", f"/collections/{name}", json={"referenceFields": fields})
            yield box
            box.call("PUT", "/_admin/faults", json={"latency_ms": 0})
        finally:
            box.close()


@contextmanager
def lab(database: Database, schema: str) -> Iterator[Runtime]:
    """publishd on ``schema`` with the projections running in this process."""
    runtime = Runtime.build(
        Settings(database_url=database.conninfo, db_schema=schema, lease_seconds=LEASE_SECONDS)
    )
    stop = threading.Event()
    projections = threading.Thread(target=runtime.run_projections, args=(stop,), daemon=True)
    projections.start()
    try:
        yield runtime
    finally:
        stop.set()
        projections.join(timeout=30)
        runtime.close()


def kill_after_requests(
    database: Database, schema: str, name: str, box: Sandbox, requests: int
) -> bool:
    """Run a worker process until the sandbox has seen ``requests``, then SIGKILL it.

    Returns whether it was still alive then (not already done, or dead of its own).
    """
    with worker_process(database, schema, name) as doomed:
        wait_until(
            lambda: box.requests() >= requests or doomed.poll() is not None,
            60,
            f"{requests} sandbox requests",
        )
        alive = doomed.poll() is None
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)
    return alive


@contextmanager
def worker_process(
    database: Database, schema: str, name: str, extra_env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``publishd worker`` as a real process on the lab's schema; killed at the end if alive.

    ``extra_env``: more of its environment (a connector's token variable, say).
    """
    env = {
        **os.environ,
        **(extra_env or {}),
        "PUBLISHD_DATABASE_URL": database.conninfo,
        "PUBLISHD_DB_SCHEMA": schema,
        "PUBLISHD_LEASE_SECONDS": str(LEASE_SECONDS),
        "PUBLISHD_WORKER_CONCURRENCY": "8",
    }
    command = [sys.executable, "-m", "interfaces.cli", "worker", "--name", name]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` (every 5 ms) until it holds; a timeout names what never happened."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.005)


def setup_main(runtime: Runtime, box: Sandbox, workspace: str, shape: Shape) -> dict[str, str]:
    """Seed the sandbox, pull it into main; returns slug -> record id of what exists."""
    ids: dict[str, str] = {}
    for a in range(shape.authors):
        ids[f"author-{a}"] = box.create("authors", {"name": f"Author {a}", "slug": f"author-{a}"})
    for b in range(shape.books):
        ids[f"book-{b}"] = box.create(
            "books",
            {
                "title": f"Book {b}",
                "slug": f"book-{b}",
                "author": ids[f"author-{b % shape.authors}"],
            },
        )
    for m in range(2):
        items = [ids[f"book-{b}"] for b in range(m, shape.books, 2)]
        ids[f"menu-{m}"] = box.create("menus", {"slug": f"menu-{m}", "items": items})
    app = runtime.app
    app.create_workspace(workspace, {"type": "sandbox", "base_url": box.url})
    for folder, schema in SCHEMAS.items():
        app.register_schema(workspace, folder, schema)
    _pull(runtime, workspace)
    return ids


def _pull(runtime: Runtime, workspace: str) -> None:
    import asyncio

    pull = runtime.app.start_pull(workspace, None)

    async def go() -> None:
        try:
            await runtime.worker().run_pull(pull.pull_id)
        finally:
            await runtime.aclose_connectors()

    asyncio.run(go())


def write_draft(runtime: Runtime, workspace: str, shape: Shape) -> None:
    app, user = runtime.app, "alice"
    for j in range(shape.new_authors):
        app.write_draft_file(
            workspace,
            user,
            f"authors/new-author-{j}.json",
            {
                "name": f"New author {j}",
                "slug": f"new-author-{j}",
                "favourite_book": f"@/books/new-book-{j}.json",
            },
        )
    for i in range(shape.books):
        app.write_draft_file(
            workspace,
            user,
            f"books/new-book-{i}.json",
            {
                "title": f"New book {i}",
                "slug": f"new-book-{i}",
                "author": f"@/authors/new-author-{i % shape.new_authors}.json",
            },
        )
    app.catch_up()
    for b in range(shape.edited):
        path = f"books/book-{b}.json"
        content = Queries(app, runtime.views).read_file(workspace, path)
        app.write_draft_file(workspace, user, path, {**content, "title": f"Book {b} (revised)"})
    for a in deleted_authors(shape):
        app.delete_draft_file(workspace, user, f"authors/author-{a}.json")
    for b in deleted_books(shape):
        app.delete_draft_file(workspace, user, f"books/book-{b}.json")


def deleted_authors(shape: Shape) -> range:
    return range(shape.authors - shape.deleted_authors, shape.authors)


def deleted_books(shape: Shape) -> range:
    return range(shape.books - shape.deleted_books, shape.books)


def run_trial(
    runtime: Runtime,
    database: Database,
    schema: str,
    shape: Shape,
    rng: random.Random,
    latency_ms: float,
    number: int,
) -> TrialResult:
    started = time.monotonic()
    workspace = f"trial-{number}-{uuid.uuid4().hex[:6]}"
    with sandbox(latency_ms) as box:
        ids = setup_main(runtime, box, workspace, shape)
        write_draft(runtime, workspace, shape)
        pipeline = runtime.app.plan(workspace, "alice")
        result = TrialResult(entries=len(pipeline.entries))
        calls = _expected_calls(pipeline)
        box.call("DELETE", "/_admin/stats")
        box.call("PUT", "/_admin/faults", json={"latency_ms": latency_ms})
        kill_after = rng.randint(1, max(1, calls - 1))
        runtime.app.request_run(pipeline.pipeline_id)
        alive = kill_after_requests(database, schema, f"doomed-{number}", box, kill_after)
        result.calls_before_kill = box.requests()
        result.interrupted = alive and _state(runtime, pipeline.pipeline_id) not in TERMINAL_STATES
        with worker_process(database, schema, f"resumer-{number}"):
            wait_until(
                lambda: _state(runtime, pipeline.pipeline_id) in TERMINAL_STATES,
                120,
                f"pipeline {pipeline.pipeline_id} to end",
            )
        box.call("PUT", "/_admin/faults", json={"latency_ms": 0})
        result.replays = int(box.call("GET", "/_admin/stats").get("duplicates", 0))
        check(runtime, box, workspace, shape, ids, pipeline.pipeline_id, result)
    result.seconds = time.monotonic() - started
    return result


def _expected_calls(pipeline: PublishPipeline) -> int:
    """The requests the run makes when nothing fails: the range a kill is drawn from."""
    limits = BATCH_LIMITS["sandbox"]
    return sum(calls_per_phase(pipeline.pipeline_id, pipeline.entries.values(), limits).values())


def _state(runtime: Runtime, pipeline_id: str) -> str:
    return runtime.app.pipeline(pipeline_id).state


def check(
    runtime: Runtime,
    box: Sandbox,
    workspace: str,
    shape: Shape,
    ids: dict[str, str],
    pipeline_id: str,
    result: TrialResult,
) -> None:
    """Compare the sandbox's records with the plan and with what the pipeline recorded."""
    pipeline = runtime.app.pipeline(pipeline_id)
    if pipeline.state != "completed":
        result.unfinished += 1
        result.problems.append(f"ended {pipeline.state}: {pipeline.counts()}")
    records = {name: box.items(name) for name in COLLECTIONS}
    by_slug: dict[str, dict[str, Any]] = {}
    for name, items in records.items():
        slugs = Counter(item["fieldData"].get("slug") for item in items)
        for slug, count in slugs.items():
            if count > 1:
                result.duplicate_creates += count - 1
                result.problems.append(f"{name}: {count} records with slug {slug!r}")
        by_slug.update({item["fieldData"]["slug"]: item for item in items})
    entries = pipeline.entries

    def published(phase: str, path: str) -> PipelineEntry | None:
        entry = entries.get(f"{phase}:{path}")
        return entry if entry is not None and entry.status == EntryStatus.PUBLISHED else None

    def expect(ok: bool, problem: str) -> None:
        if not ok:
            result.problems.append(problem)

    # creates: one record per new file, whose id the pipeline recorded
    new = [("authors", f"new-author-{j}") for j in range(shape.new_authors)]
    new += [("books", f"new-book-{i}") for i in range(shape.books)]
    for folder, slug in new:
        item = by_slug.get(slug)
        entry = published("create", f"{folder}/{slug}.json")
        if item is not None and (entry is None or entry.record_id != item["id"]):
            result.lost_outcomes += 1
            result.problems.append(f"{slug}: created as {item['id']}, recorded {entry}")
        expect(item is not None and entry is not None, f"{slug}: no record or no outcome")
    # backfilled pointers
    for i in range(shape.books):
        book = by_slug.get(f"new-book-{i}")
        author = by_slug.get(f"new-author-{i % shape.new_authors}")
        expect(
            bool(book and author and book["fieldData"].get("author") == author["id"]),
            f"new-book-{i} does not point at its author",
        )
    for j in range(shape.new_authors):
        author, book = by_slug.get(f"new-author-{j}"), by_slug.get(f"new-book-{j}")
        expect(
            bool(author and book and author["fieldData"].get("favourite_book") == book["id"]),
            f"new-author-{j} does not point at its favourite book",
        )
    # edits, clearing edits and deletes
    gone_authors = {ids[f"author-{a}"] for a in deleted_authors(shape)}
    gone_books = {ids[f"book-{b}"] for b in deleted_books(shape)}
    for b in range(shape.books):
        slug, item = f"book-{b}", by_slug.get(f"book-{b}")
        if ids[slug] in gone_books:
            _check_deleted(result, item, published("delete", f"books/{slug}.json"), slug)
            continue
        if item is None:
            result.problems.append(f"{slug} vanished")
            continue
        retitled = item["fieldData"]["title"].endswith("(revised)")
        cleared = ids[f"author-{b % shape.authors}"] in gone_authors
        expect(retitled == (b < shape.edited), f"{slug}: title {item['fieldData']['title']!r}")
        expect((item["fieldData"]["author"] is None) == cleared, f"{slug}: author not cleared")
        if (retitled or cleared) and published("edit", f"books/{slug}.json") is None:
            result.lost_outcomes += 1
            result.problems.append(f"{slug}: edited in the sandbox, not recorded")
    for a in deleted_authors(shape):
        slug = f"author-{a}"
        _check_deleted(result, by_slug.get(slug), published("delete", f"authors/{slug}.json"), slug)
    for m in range(2):
        items = by_slug[f"menu-{m}"]["fieldData"]["items"]
        before = [ids[f"book-{b}"] for b in range(m, shape.books, 2)]
        expect(items == [i for i in before if i not in gone_books], f"menu-{m}: items {items}")
        if items != before and published("edit", f"menus/menu-{m}.json") is None:
            result.lost_outcomes += 1
            result.problems.append(f"menu-{m}: cleared in the sandbox, not recorded")
    # publishd's FileIndex agrees with the sandbox
    runtime.app.catch_up()
    files = [(folder, f"{slug}.json") for folder, slug in new]
    known = runtime.views.record_ids(workspace, files)
    for folder, slug in new:
        item = by_slug.get(slug)
        expect(
            item is not None and known.get((folder, f"{slug}.json")) == item["id"],
            f"FileIndex of {folder}/{slug}.json is not the sandbox's record",
        )


def _check_deleted(
    result: TrialResult, item: dict[str, Any] | None, entry: PipelineEntry | None, slug: str
) -> None:
    if item is not None:
        result.problems.append(f"{slug} was not deleted")
    elif entry is None:
        result.lost_outcomes += 1
        result.problems.append(f"{slug}: deleted in the sandbox, not recorded")


def run_trials(
    database: Database,
    schema: str,
    trials: int,
    shape: Shape,
    latency_ms: float,
    seed: int,
    report: Callable[[int, TrialResult], None] = lambda n, r: None,
) -> list[TrialResult]:
    rng = random.Random(seed)
    results = []
    with lab(database, schema) as runtime:
        for number in range(trials):
            result = run_trial(runtime, database, schema, shape, rng, latency_ms, number)
            report(number, result)
            results.append(result)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=int(os.environ.get("BENCH_TRIALS", 200)))
    parser.add_argument(
        "--zombie-trials", type=int, default=int(os.environ.get("BENCH_ZOMBIE_TRIALS", 20))
    )
    parser.add_argument(
        "--db-restart-trials", type=int, default=int(os.environ.get("BENCH_DB_RESTART_TRIALS", 5))
    )
    parser.add_argument("--books", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()

    from bench.reliability_faults import run_db_restart_trials, run_zombie_trials

    def report(number: int, r: TrialResult, kind: str = "SIGKILL") -> None:
        print(
            f"trial {number:2d} ({kind}): {r.entries} entries,"
            f" stopped after {r.calls_before_kill:3d} calls"
            f" ({'mid-run' if r.interrupted else 'NOT mid-run'}), {r.replays} replayed,"
            f" duplicates {r.duplicate_creates}, lost {r.lost_outcomes},"
            f" unfinished {r.unfinished}, {len(r.problems)} problems, {r.seconds:.1f} s",
            flush=True,
        )
        for problem in r.problems:
            print(f"          {problem}")

    database = database_from_env()
    print(f"seed {args.seed}")
    with temporary_schema(database, "bench_crash") as schema:
        results = run_trials(
            database, schema, args.trials, Shape(args.books), args.latency_ms, args.seed, report
        )
        zombies = run_zombie_trials(
            database,
            schema,
            args.zombie_trials,
            Shape(args.books),
            args.latency_ms,
            args.seed,
            lambda n, r, w: report(n, r, f"zombie, {w} zombie writes"),
        )
    restarts = run_db_restart_trials(
        args.db_restart_trials,
        Shape(args.books),
        args.latency_ms,
        args.seed,
        lambda n, r: report(n, r, "database restarted"),
    )
    everything = [*results, *(r for r, _ in zombies), *restarts]
    problems = sum(len(r.problems) for r in everything)
    print(f"{len(everything)} trials, {problems} problems in all")
    print_result(
        trials=len(results),
        duplicate_creates=sum(r.duplicate_creates for r in everything),
        lost_outcomes=sum(r.lost_outcomes for r in everything),
        unfinished=sum(r.unfinished for r in [*results, *(r for r, _ in zombies)]),
        problems=problems,
        interrupted=sum(r.interrupted for r in results),
        replayed_calls=sum(r.replays for r in results),
        entries_per_trial=min((r.entries for r in everything), default=0),
        zombie_trials=len(zombies),
        zombie_writes=sum(w for _, w in zombies),
        zombie_interrupted=sum(r.interrupted for r, _ in zombies),
        db_restart_trials=len(restarts),
        db_restart_unfinished=sum(1 for r in restarts if r.unfinished or r.problems),
        db_restart_interrupted=sum(r.interrupted for r in restarts),
    )


if __name__ == "__main__":
    main()
