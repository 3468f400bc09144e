"""Event streams under load: replay speed, live latency, and a thousand subscribers.

    PUBLISHD_DATABASE_URL=postgresql://... python -m bench.sse

The streams app (``stream_routes`` over one ``EventFeed``) runs under uvicorn
in a subprocess; this process writes events through an eventsourcing
Application (the publishd recorder) and reads the streams with a minimal
asyncio HTTP/1.1 client, so the client's own cost stays small and the figures
are the server's.

1. replay: one pipeline of ``BENCH_REPLAY_EVENTS`` (default 100,000) events,
   streamed from the start to one client until the terminal event closes it;
   the median of three runs (each run's figure is printed too).
   Baseline: the same rows read with plain psycopg in pages of 5,000.
2. live: one subscriber; ``BENCH_LIVE_EVENTS`` commits of one event each,
   ~100/s; latency = client receive time - time the save returned (commit).
   Baseline: PostgreSQL NOTIFY -> LISTEN latency on the same server.
3. fan-out: 50 pipelines x 20 subscribers = 1,000 streams in one server
   process, 200 events/s written in total for ``BENCH_FANOUT_SECONDS`` (by two
   writer processes, 100 commits/s each, one event per commit);
   every subscriber must receive every event of its pipeline exactly once.

The wall clock (``time.time``) times commits and receipts: both happen in this
process. Everything runs in a throwaway schema, dropped at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.application import Application
from psycopg import sql

from bench.common import database_from_env, print_result, temporary_schema
from bench.sse_client import Received, stream
from domain.pipeline import PublishPipeline
from domain.plan import PlanEntry
from infrastructure.postgres.database import Database, from_url
from infrastructure.postgres.tokens import TokenStore

REPLAY_EVENTS = int(os.environ.get("BENCH_REPLAY_EVENTS", "100000"))
REPLAY_RUNS = 3
LIVE_EVENTS = int(os.environ.get("BENCH_LIVE_EVENTS", "500"))
FANOUT_PIPELINES = 50
FANOUT_PER_PIPELINE = 20
FANOUT_RATE = 200.0
FANOUT_WRITERS = 2  # processes sharing the pipelines: one cannot always commit 200/s on a busy box
FANOUT_SECONDS = float(os.environ.get("BENCH_FANOUT_SECONDS", "10"))
WORKER = "bench"


class PublishdApplication(Application[UUID]):
    """Stands in for the app's single Application (same table naming)."""


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# --- writing ------------------------------------------------------------------------
def planned(entries: int, workspace: str) -> PublishPipeline:
    pipeline = PublishPipeline(
        pipeline_id=str(uuid4()),
        workspace_id=workspace,
        user="bench",
        main_version=0,
        draft_version=1,
        phases=[{"phase": "create", "entries": entries}],
    )
    pipeline.plan_entries(
        [
            PlanEntry(
                f"books/b{i}.json",
                "create",
                {"type": "create", "folder": "books", "fields": {"title": f"Book {i}"}},
            )
            for i in range(entries)
        ]
    )
    return pipeline


def running(store: PublishdApplication, workspace: str) -> PublishPipeline:
    pipeline = planned(1, workspace)
    pipeline.request_run(
        main_version=pipeline.last_main_version, draft_version=pipeline.draft_version
    )
    pipeline.claim(WORKER, datetime.now(UTC), timedelta(hours=1))
    store.save(pipeline)
    return pipeline


def renew(store: PublishdApplication, pipeline: PublishPipeline) -> float:
    """One LeaseRenewed event in its own commit; returns the wall time the commit returned."""
    pipeline.claim(WORKER, datetime.now(UTC), timedelta(hours=1))
    store.save(pipeline)
    return time.time()


def finish(store: PublishdApplication, pipeline: PublishPipeline) -> None:
    pipeline.request_cancel()
    pipeline.confirm_cancel(WORKER)
    store.save(pipeline)


# --- the server subprocess ------------------------------------------------------------
def serve(fd: int, conninfo: str, schema: str, table: str) -> None:
    """Run in the subprocess: the streams app on an inherited listening socket."""
    from contextlib import asynccontextmanager

    import uvicorn
    from starlette.applications import Starlette

    from infrastructure.postgres.feed.event_feed import EventFeed
    from interfaces.http.auth import Authenticator
    from interfaces.http.errors import install_error_handlers
    from interfaces.http.streams import stream_routes

    feed = EventFeed(conninfo, schema=schema, table=table, pool_size=8)
    tokens = TokenStore(conninfo, schema)
    authenticator = Authenticator(tokens, cache_seconds=60)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> Any:
        tokens.open()
        await feed.start()
        yield
        await feed.aclose()
        tokens.close()

    app = Starlette(routes=stream_routes(feed, authenticator), lifespan=lifespan)
    install_error_handlers(app)
    uvicorn.run(
        app, fd=fd, log_level="warning", access_log=False, backlog=2048, timeout_graceful_shutdown=1
    )


class Server:
    def __init__(self, database: Database, schema: str, table: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(2048)  # connections queue here until uvicorn accepts them
        self.port = self.sock.getsockname()[1]
        fd = self.sock.fileno()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.sse",
                "--serve",
                str(fd),
                database.conninfo,
                schema,
                table,
            ],
            pass_fds=[fd],
        )

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.sock.close()


# --- the three measurements -------------------------------------------------------------
def measure_replay(
    database: Database,
    store: PublishdApplication,
    server: Server,
    token: str,
    schema: str,
    table: str,
) -> dict[str, Any]:
    pipeline = planned(REPLAY_EVENTS - 2, "replay")
    pipeline.mark_stale("bench: a terminal event to close the stream")
    started = time.perf_counter()
    store.save(pipeline)
    setup_s = time.perf_counter() - started
    rates: list[float] = []
    for _ in range(REPLAY_RUNS):  # the first run also pays for cold caches (server and database)
        received: list[Received] = []
        started = time.perf_counter()
        asyncio.run(stream(server.port, f"/pipelines/{pipeline.id}/events", token, received.append))
        rates.append(len(received) / (time.perf_counter() - started))
        ids = [r.id for r in received]
        assert ids == list(range(1, pipeline.version + 1)), "replay lost or repeated events"

    events = sql.Identifier(schema, table)
    query = sql.SQL(
        "SELECT notification_id, originator_id, originator_version, topic, state "
        "FROM {} WHERE originator_id = %s AND originator_version > %s "
        "ORDER BY originator_version LIMIT 5000"
    ).format(events)
    raw: list[float] = []
    for _ in range(REPLAY_RUNS):
        started = time.perf_counter()
        with database.connect(autocommit=True) as conn:
            after, rows = 0, 0
            while page := conn.execute(query, (pipeline.id, after), binary=True).fetchall():
                rows += len(page)
                after = page[-1][2]
        raw.append(rows / (time.perf_counter() - started))
    return {
        "replay_events": len(ids),
        "replay_events_per_s": statistics.median(rates),
        "replay_runs_events_per_s": [round(r) for r in rates],
        "raw_select_rows_per_s": statistics.median(raw),
        "replay_setup_save_s": setup_s,
    }


def run_writer(target: Callable[[], None]) -> threading.Thread:
    """The live measurement's writer: one thread, one event per commit."""
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


async def _wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("bench condition not reached")
        await asyncio.sleep(0.01)


def measure_live(store: PublishdApplication, server: Server, token: str) -> dict[str, float]:
    pipeline = running(store, "live")
    committed: dict[int, float] = {}
    received: list[Received] = []

    def write() -> None:
        for _ in range(LIVE_EVENTS):
            at = renew(store, pipeline)
            committed[pipeline.version] = at
            time.sleep(0.01)
        finish(store, pipeline)

    async def main() -> None:
        reader = asyncio.create_task(
            stream(server.port, f"/pipelines/{pipeline.id}/events", token, received.append)
        )
        await _wait_for(lambda: len(received) >= pipeline.version)  # caught up: now live
        writer = run_writer(write)
        await reader
        writer.join()

    asyncio.run(main())
    latencies = [(r.at - committed[r.id]) * 1000 for r in received if r.id in committed]
    assert len(latencies) == LIVE_EVENTS, "live subscriber missed events"
    return {
        "live_events": len(latencies),
        "live_p50_ms": statistics.median(latencies),
        "live_p99_ms": percentile(latencies, 99),
        "live_max_ms": max(latencies),
    }


def notify_baseline(database: Database, rounds: int = 300) -> dict[str, float]:
    latencies: list[float] = []
    with database.connect(autocommit=True) as listener, database.connect(autocommit=True) as tx:
        listener.execute("LISTEN bench_sse_baseline")
        for _ in range(rounds):
            sent = time.perf_counter()
            tx.execute("NOTIFY bench_sse_baseline, '1'")
            next(listener.notifies(timeout=5, stop_after=1))
            latencies.append((time.perf_counter() - sent) * 1000)
    return {
        "notify_p50_ms": statistics.median(latencies),
        "notify_p99_ms": percentile(latencies, 99),
    }


def write_fanout(conninfo: str, schema: str, rate: float, seconds: float, ids: list[str]) -> None:
    """Run in its own process, so that writing and reading do not share one GIL.

    Prints one JSON document: each commit's (pipeline, version, wall time), and
    each pipeline's final version.
    """
    env = from_url(conninfo).eventsourcing_env(schema)
    env["CREATE_TABLE"] = "n"  # the parent made them; concurrent DDL would collide
    store = PublishdApplication(env=env)
    pipelines: list[PublishPipeline] = [store.repository.get(UUID(i)) for i in ids]
    committed: list[tuple[str, int, float]] = []
    interval, total = 1.0 / rate, int(rate * seconds)
    start = time.perf_counter()
    for n in range(total):
        delay = start + n * interval - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        pipeline = pipelines[n % len(pipelines)]
        at = renew(store, pipeline)
        committed.append((str(pipeline.id), pipeline.version, at))
    paced = time.perf_counter() - start
    for pipeline in pipelines:
        finish(store, pipeline)  # closes every stream
    final = {str(p.id): p.version for p in pipelines}
    print(json.dumps({"committed": committed, "final": final, "paced_s": paced}))
    store.close()


def measure_fanout(
    database: Database, store: PublishdApplication, schema: str, server: Server, token: str
) -> dict[str, float]:
    pipelines = [running(store, f"ws{i % 5}") for i in range(FANOUT_PIPELINES)]
    streams: list[list[Received]] = [[] for _ in range(FANOUT_PIPELINES * FANOUT_PER_PIPELINE)]
    output: list[bytes] = []

    async def main() -> None:
        gate = asyncio.Semaphore(100)  # connect in waves, as clients would over a few seconds

        async def one(i: int) -> None:
            pipeline = pipelines[i // FANOUT_PER_PIPELINE]
            async with gate:
                connected = asyncio.Event()
                task = asyncio.create_task(
                    stream(
                        server.port,
                        f"/pipelines/{pipeline.id}/events",
                        token,
                        streams[i].append,
                        on_connect=connected.set,
                    )
                )
                await connected.wait()
                await _wait_for(lambda: len(streams[i]) >= 3)  # replayed: plan, run, claim
            await task

        readers = [asyncio.create_task(one(i)) for i in range(len(streams))]
        await _wait_for(lambda: all(len(s) >= 3 for s in streams), timeout=120)
        share = len(pipelines) // FANOUT_WRITERS
        writers = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.sse",
                "--write-fanout",
                database.conninfo,
                schema,
                str(FANOUT_RATE / FANOUT_WRITERS),
                str(FANOUT_SECONDS),
                *(str(p.id) for p in pipelines[w * share : (w + 1) * share]),
                stdout=asyncio.subprocess.PIPE,
            )
            for w in range(FANOUT_WRITERS)
        ]
        outputs = await asyncio.gather(*(w.communicate() for w in writers))
        await asyncio.gather(*readers)
        output.extend(out for out, _ in outputs)

    asyncio.run(main())
    reports = [json.loads(out) for out in output]
    report = {
        "committed": [c for r in reports for c in r["committed"]],
        "final": {k: v for r in reports for k, v in r["final"].items()},
        "paced_s": max(r["paced_s"] for r in reports),
    }
    committed = {(pid, version): at for pid, version, at in report["committed"]}
    latencies: list[float] = []
    missed = 0
    for i, received in enumerate(streams):
        pid = str(pipelines[i // FANOUT_PER_PIPELINE].id)
        if [r.id for r in received] != list(range(1, report["final"][pid] + 1)):
            missed += 1
        latencies += [
            (r.at - committed[(pid, r.id)]) * 1000 for r in received if (pid, r.id) in committed
        ]
    written = len(committed)
    return {
        "subscribers": len(streams),
        "fanout_events_written": written,
        "fanout_deliveries": len(latencies),
        "fanout_subscribers_missing_events": missed,
        "fanout_p50_ms": statistics.median(latencies),
        "fanout_p99_ms": percentile(latencies, 99),
        "fanout_max_ms": max(latencies),
        "fanout_write_rate_per_s": written / report["paced_s"],
    }


def main() -> None:
    database = database_from_env()
    with temporary_schema(database, "bench_sse") as schema:
        store = PublishdApplication(env=database.eventsourcing_env(schema))
        table = store.recorder.events_table_name  # type: ignore[attr-defined]
        tokens = TokenStore(database.conninfo, schema)
        tokens.open()
        tokens.create_tables()
        token = tokens.create_token(None, [], admin=True)
        server = Server(database, schema, table)
        try:
            figures: dict[str, Any] = {}
            figures |= measure_replay(database, store, server, token, schema, table)
            print(f"replay: {figures['replay_events_per_s']:,.0f} events/s", flush=True)
            figures |= notify_baseline(database)
            figures |= measure_live(store, server, token)
            print(
                f"live: p50 {figures['live_p50_ms']:.1f} ms, p99 {figures['live_p99_ms']:.1f} ms",
                flush=True,
            )
            figures |= measure_fanout(database, store, schema, server, token)
        finally:
            server.stop()
            tokens.close()
            store.close()
    figures["replay_vs_raw_select"] = (
        figures["replay_events_per_s"] / figures["raw_select_rows_per_s"]
    )
    figures["live_p99_vs_notify_p99"] = figures["live_p99_ms"] / figures["notify_p99_ms"]
    print_result(**{k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()})


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), *sys.argv[3:6])
    elif len(sys.argv) > 1 and sys.argv[1] == "--write-fanout":
        write_fanout(sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]), sys.argv[6:])
    else:
        main()
