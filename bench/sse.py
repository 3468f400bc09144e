"""Event streams under load: replay speed, live latency, and a thousand subscribers.

    PUBLISHD_DATABASE_URL=postgresql://... python -m bench.sse

The streams app (``stream_routes`` over one ``EventFeed``) runs under uvicorn
in a subprocess (``bench.sse_server``); this process writes events through an eventsourcing
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
3. fan-out: 100 pipelines x 20 subscribers = 2,000 streams in one server
   process, 400 events/s written in total for ``BENCH_FANOUT_SECONDS`` (by four
   writer processes, 100 commits/s each, one event per commit): 8,000
   deliveries/s; every subscriber must receive every event of its pipeline
   exactly once. It runs once per server flavour of ``BENCH_SSE_SERVERS``
   (default ``h11,httptools``): uvicorn's pure-Python stack (asyncio + h11,
   what ``publishd serve`` runs) beside ``uvicorn[standard]``'s (uvloop +
   httptools), each against a server process of its own, so the two are
   measured side by side in one run.

The wall clock (``time.time``) times commits and receipts: both happen in this
process. Everything runs in a throwaway schema, dropped at the end.

Every wait has a deadline (the ``*_DEADLINE_S`` figures, generous next to the
measured times): a writer or the server that dies makes the run fail with a
message naming the wait and, for a writer, its stderr, and exit 1.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.application import Application
from psycopg import sql

from bench.common import database_from_env, print_result, temporary_schema
from bench.sse_client import BenchFailure, Received, stream, wait_until, within
from bench.sse_server import Server
from domain.pipeline import PublishPipeline
from domain.plan import Phase, PlanEntry
from infrastructure.postgres.database import Database, from_url
from infrastructure.postgres.tokens import TokenStore

REPLAY_EVENTS = int(os.environ.get("BENCH_REPLAY_EVENTS", "100000"))
REPLAY_RUNS = 3
LIVE_EVENTS = int(os.environ.get("BENCH_LIVE_EVENTS", "500"))
FANOUT_PIPELINES = int(os.environ.get("BENCH_FANOUT_PIPELINES", "100"))
FANOUT_PER_PIPELINE = int(os.environ.get("BENCH_FANOUT_PER_PIPELINE", "20"))
FANOUT_RATE = float(os.environ.get("BENCH_FANOUT_RATE", "400"))
FANOUT_WRITERS = 4  # processes sharing the pipelines: one cannot always commit 100+/s on a busy box
SERVERS = os.environ.get("BENCH_SSE_SERVERS", "h11,httptools").split(",")
FANOUT_SECONDS = float(os.environ.get("BENCH_FANOUT_SECONDS", "10"))
WORKER = "bench"
REPLAY_DEADLINE_S = 60 + REPLAY_EVENTS / 1_000  # each run; measured at 10k-64k events/s
LIVE_DEADLINE_S = 60 + LIVE_EVENTS * 0.1  # ~100 commits/s when healthy
CATCH_UP_DEADLINE_S = 120  # subscribers connected and replayed
FANOUT_DEADLINE_S = FANOUT_SECONDS + 60  # the writers' run; the streams close within 60 s after


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
                Phase.CREATE,
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
        replay = stream(server.port, f"/pipelines/{pipeline.id}/events", token, received.append)
        asyncio.run(within(replay, REPLAY_DEADLINE_S, f"replay of {pipeline.version} events"))
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


def measure_live(store: PublishdApplication, server: Server, token: str) -> dict[str, float]:
    pipeline = running(store, "live")
    committed: dict[int, float] = {}
    received: list[Received] = []
    failed: list[BaseException] = []

    def write() -> None:
        """One thread, one event per commit; a failure is reported, not lost with the thread."""
        try:
            for _ in range(LIVE_EVENTS):
                at = renew(store, pipeline)
                committed[pipeline.version] = at
                time.sleep(0.01)
            finish(store, pipeline)
        except BaseException as e:
            failed.append(e)

    async def main() -> None:
        reader = asyncio.create_task(
            stream(server.port, f"/pipelines/{pipeline.id}/events", token, received.append)
        )
        caught_up = "live: the subscriber's replay"
        await wait_until(lambda: len(received) >= pipeline.version, 60, caught_up, watch=[reader])
        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        what = f"live: {LIVE_EVENTS} commits delivered"
        await wait_until(lambda: reader.done() or bool(failed), LIVE_DEADLINE_S, what)
        if failed:
            raise BenchFailure("live: the writer failed") from failed[0]
        await reader  # done: raises whatever ended it
        writer.join(30)

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
            if next(listener.notifies(timeout=5, stop_after=1), None) is None:
                raise BenchFailure("notify baseline: no NOTIFY within 5 s")
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


async def finished(process: asyncio.subprocess.Process, what: str) -> bytes:
    """A writer's stdout once it exited 0; killed at the deadline or when abandoned."""
    try:
        out, err = await within(process.communicate(), FANOUT_DEADLINE_S, what)
    finally:
        if process.returncode is None:
            process.kill()
    if process.returncode != 0:
        tail = err.decode(errors="replace")[-3000:]
        raise BenchFailure(f"{what} exited with {process.returncode}:\n{tail}")
    return out


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
                task = asyncio.create_task(
                    stream(
                        server.port, f"/pipelines/{pipeline.id}/events", token, streams[i].append
                    )
                )
                replayed = f"fan-out: subscriber {i} replayed plan, run, claim"
                await wait_until(lambda: len(streams[i]) >= 3, 60, replayed, watch=[task])
            await task

        readers = [asyncio.create_task(one(i)) for i in range(len(streams))]
        caught_up = f"fan-out: {len(streams)} subscribers replayed"
        await wait_until(
            lambda: all(len(s) >= 3 for s in streams), CATCH_UP_DEADLINE_S, caught_up, watch=readers
        )
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
                stderr=asyncio.subprocess.PIPE,
            )
            for w in range(FANOUT_WRITERS)
        ]
        output.extend(
            await asyncio.gather(
                *(finished(w, f"fan-out writer {n}") for n, w in enumerate(writers))
            )
        )
        closed = "fan-out: every stream closed after the writers finished"
        await within(asyncio.gather(*readers), 60, closed)

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
        server = Server(database, schema, table, SERVERS[0])
        figures: dict[str, Any] = {"servers": SERVERS}
        try:
            figures |= measure_replay(database, store, server, token, schema, table)
            print(f"replay: {figures['replay_events_per_s']:,.0f} events/s", flush=True)
            figures |= notify_baseline(database)
            figures |= measure_live(store, server, token)
            print(
                f"live: p50 {figures['live_p50_ms']:.1f} ms, p99 {figures['live_p99_ms']:.1f} ms",
                flush=True,
            )
            for flavour in SERVERS:
                if flavour != server.flavour:
                    server.stop()
                    server = Server(database, schema, table, flavour)
                fanout = measure_fanout(database, store, schema, server, token)
                print(
                    f"fan-out ({flavour}): {fanout['subscribers']} subscribers, "
                    f"p99 {fanout['fanout_p99_ms']:.0f} ms, "
                    f"{fanout['fanout_subscribers_missing_events']} missing events",
                    flush=True,
                )
                figures |= {f"{flavour}_{name}": value for name, value in fanout.items()}
        except BenchFailure as failure:
            if (code := server.process.poll()) is not None:
                failure.add_note(f"the stream server had exited with code {code}")
            raise
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
    if len(sys.argv) > 1 and sys.argv[1] == "--write-fanout":
        write_fanout(sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]), sys.argv[6:])
    else:
        try:
            main()
        except BenchFailure as failure:
            sys.exit(
                "bench.sse failed: " + "\n".join([str(failure), *getattr(failure, "__notes__", [])])
            )
