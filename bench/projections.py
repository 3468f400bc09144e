"""Projection rebuild throughput and live lag, against a raw COPY baseline.

``python -m bench.projections`` (needs ``PUBLISHD_DATABASE_URL``; works in its
own schema and drops it). Writes a realistic mix of events (main changes of
several files with references, draft writes, pipelines with planned and
published entries) in large saves, rebuilds every projection from scratch,
and compares events/s with COPYing the same number of event rows. Then writes
200 events/s for ~10 s with a runner live against the rebuilt (big) tables,
and measures per event the lag from its commit to its row being read back
from ``main_files`` by a reader that the projection channel wakes.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

from eventsourcing.application import Application

from bench.common import database_from_env, print_result, temporary_schema
from domain.draft import Draft
from domain.pipeline import PublishPipeline
from domain.plan import PlanEntry
from domain.schema import FolderSchema
from domain.workspace import MainChange, Workspace
from infrastructure.postgres.database import Database
from infrastructure.postgres.projections.rebuild import rebuild
from infrastructure.postgres.projections.runner import ProjectionRunner
from infrastructure.postgres.projections.tables import ProjectionTables

TARGET_EVENTS = int(os.environ.get("BENCH_EVENTS", "500000"))
SAVE_CHUNK = 5000
COLUMNS = "originator_id, originator_version, topic, state, notification_id"
BOOKS = {"fields": [{"name": "author", "reference": True, "referenceTarget": "authors"}]}


class Store(Application[uuid.UUID]):
    name = "publishd"


def _book(n: int) -> dict[str, Any]:
    return {
        "id": f"b{n}",
        "title": f"Book number {n}",
        "slug": f"book-{n}",
        "author": f"a{n % 997}",
        "summary": "A realistic paragraph of text " * 4,
        "tags": ["fiction", "classic"],
        "createdOn": "2024-01-01T00:00:00Z",
    }


def write_events(app: Store, total: int) -> int:
    """Thirds: main changes (4 files each), draft writes, pipeline entries."""
    written = 0
    workspaces = []
    for w in range(4):
        ws = Workspace(f"ws{w}", {"type": "sandbox"})
        ws.register_schema(FolderSchema.from_dict("books", BOOKS))
        ws.register_schema(FolderSchema.from_dict("authors", {}))
        workspaces.append(ws)
    share = total // 3
    n = 0
    while written < share:
        for ws in workspaces:
            for _ in range(SAVE_CHUNK // len(workspaces)):
                n += 1
                changes = [
                    MainChange(
                        f"books/book-{(n * 2 + k) % 20000}.json",
                        _book(n * 2 + k),
                        f"b{(n * 2 + k) % 20000}",
                    )
                    for k in range(2)
                ] + [
                    MainChange(
                        f"authors/a{(n + k) % 997}.json",
                        {"id": f"a{(n + k) % 997}", "name": "X"},
                        f"a{(n + k) % 997}",
                    )
                    for k in range(2)
                ]
                ws.change_main("pull", changes)
        pending = sum(len(ws.pending_events) for ws in workspaces)
        app.save(*workspaces)
        written += pending
    drafts = [Draft(f"ws{d % 4}", f"user{d}") for d in range(40)]
    i = 0
    while written < 2 * share:
        for draft in drafts:
            for _ in range(SAVE_CHUNK // len(drafts)):
                i += 1
                draft.write_file(
                    f"books/d{i % 5000}.json", {**_book(i), "author": f"@/authors/a{i % 997}.json"}
                )
        pending = sum(len(d.pending_events) for d in drafts)
        app.save(*drafts)
        written += pending
    while written < total:
        pipeline = PublishPipeline(
            str(uuid.uuid4()), "ws0", "user0", 1, 1, [{"phase": "create", "entries": 1000}]
        )
        pipeline.plan_entries(
            [
                PlanEntry(f"books/p{k}.json", "create", {"type": "create", "folder": "books"})
                for k in range(1000)
            ]
        )
        pipeline.request_run(
            main_version=pipeline.last_main_version, draft_version=pipeline.draft_version
        )
        pipeline.claim("w", pipeline.modified_on, timedelta(seconds=60))
        pipeline.start_phase("w", "create")
        for k in range(1000):
            pipeline.publish_entry("w", f"create:books/p{k}.json", f"r{k}", None, 1)
        pipeline.finish("w")
        pending = len(pipeline.pending_events)
        app.save(pipeline)
        written += pending
    return written


def checkpoint(database: Database) -> None:
    """Flush the dirty pages of what ran before, so each timed part pays for its own writes only."""
    with database.connect(autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def settle(database: Database, schema: str, events_table: str) -> None:
    """Bring the just-written events table to the state of one written a while ago.

    A rebuild replays an event store that autovacuum has long since visited.
    Freshly written, the first scan of its rows would set their hint bits (and
    write every page again) while autovacuum processes them alongside: work
    the writes caused, not the rebuild.
    """
    with database.connect(autocommit=True) as conn:
        conn.execute(f'VACUUM (ANALYZE) "{schema}"."{events_table}"')


def copy_baseline(database: Database, schema: str, events_table: str) -> tuple[int, float]:
    """COPY the same rows into a bare table: what the server can ingest, raw."""
    with database.connect() as conn:
        conn.execute(f'CREATE TABLE "{schema}".copy_baseline (LIKE "{schema}"."{events_table}")')
        with conn.cursor(binary=True) as cur:
            rows = cur.execute(f'SELECT {COLUMNS} FROM "{schema}"."{events_table}"').fetchall()
        start = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy(f'COPY "{schema}".copy_baseline ({COLUMNS}) FROM STDIN') as copy,
        ):
            for row in rows:
                copy.write_row(row)
        conn.commit()
        elapsed = time.perf_counter() - start
        conn.execute(f'DROP TABLE "{schema}".copy_baseline')
        conn.commit()
        return len(rows), elapsed


def live_lag(
    database: Database, schema: str, app: Store, seconds: float = 10.0, rate: int = 200
) -> tuple[list[float], int]:
    """Lag from each event's commit to its row being readable in ``main_files``.

    A reader woken by the projection channel (as ``wait_for_position`` is)
    SELECTs the rows of the events committed so far; an event counts as
    visible when its row comes back. Returns the sorted lags (ms) and how
    many events never became visible.
    """
    stop = threading.Event()
    runner = threading.Thread(
        target=ProjectionRunner(database, schema, events_table="publishd_events").run,
        args=(stop,),
        daemon=True,
    )
    runner.start()
    committed: dict[str, float] = {}
    visible: dict[str, float] = {}
    tables = ProjectionTables(schema)
    listening = threading.Event()

    def look(conn: Any) -> None:
        pending = [path for path in list(committed) if path not in visible]
        if pending:
            rows = conn.execute(
                tables.q(
                    "SELECT path FROM {main_files} WHERE workspace = 'ws0' AND path = ANY(%s)"
                ),
                (pending,),
            ).fetchall()
            at = time.perf_counter()
            for (path,) in rows:
                visible[path] = at

    def listen() -> None:
        with database.connect(autocommit=True) as conn:
            conn.execute(f'LISTEN "{tables.channel}"')
            listening.set()
            while not stop.is_set():
                # (the connection is busy until the notifies generator ends)
                for _ in conn.notifies(timeout=0.2, stop_after=1):
                    pass
                look(conn)

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    listening.wait(10)
    ws = app.repository.get(Workspace.create_id("ws0"))
    run = uuid.uuid4().hex[:8]  # paths no earlier run wrote: a row seen is this run's
    start = time.perf_counter()
    for k in range(int(seconds * rate)):
        due = start + k / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        path = f"books/live-{run}-{k}.json"
        ws.change_main("live", [MainChange(path, _book(k), f"L{run}-{k}")])
        app.save(ws)
        committed[path] = time.perf_counter()
    deadline = time.perf_counter() + 10
    while time.perf_counter() < deadline and len(visible) < len(committed):
        time.sleep(0.05)
    stop.set()
    runner.join(10)
    listener.join(10)
    lags = sorted(max(0.0, visible[p] - at) * 1000 for p, at in committed.items() if p in visible)
    return lags, len(committed) - len(lags)


def main() -> None:
    database = database_from_env()
    with temporary_schema(database, "bench_proj") as schema:
        app = Store(env=database.eventsourcing_env(schema, pool_size=2))
        t0 = time.perf_counter()
        events = write_events(app, TARGET_EVENTS)
        print(f"wrote {events} events in {time.perf_counter() - t0:.1f}s", flush=True)
        events_table = "publishd_events"
        settle(database, schema, events_table)
        checkpoint(database)
        start = time.perf_counter()
        rebuild(database, schema, events_table=events_table)
        rebuild_s = time.perf_counter() - start
        print(f"rebuild of {events} events: {rebuild_s:.1f}s", flush=True)
        checkpoint(database)
        rows, copy_s = copy_baseline(database, schema, events_table)
        print(f"COPY of {rows} rows: {copy_s:.1f}s", flush=True)
        checkpoint(database)
        with database.connect(autocommit=True) as conn:
            conn.execute(f'ANALYZE "{schema}".publishd_events')
        lags, missing = live_lag(database, schema, app)
        app.close()
        rebuild_rate = events / rebuild_s
        copy_rate = rows / copy_s
        print_result(
            events=events,
            rebuild_s=round(rebuild_s, 2),
            rebuild_events_per_s=round(rebuild_rate),
            baseline_copy_rows_per_s=round(copy_rate),
            ratio=round(rebuild_rate / copy_rate, 3),
            live_events=len(lags) + missing,
            live_never_visible=missing,
            live_lag_p50_ms=round(lags[len(lags) // 2], 1) if lags else None,
            live_lag_p99_ms=round(lags[int(len(lags) * 0.99)], 1) if lags else None,
        )


if __name__ == "__main__":
    main()
