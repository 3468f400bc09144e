"""The API's latency under 20 concurrent clients: planning a draft, reading a status.

    PUBLISHD_DATABASE_URL=postgresql://... python -m bench.api

``publishd serve`` runs as a process of its own on a throwaway schema (its
workers and projections too, as in production); this process is the clients:
``BENCH_API_CLIENTS`` (default 20) asyncio tasks, spread over
``BENCH_API_SERVERS`` (default 1) serve processes on the one schema, each
sending ``BENCH_API_REQUESTS`` (default 50) requests of each kind in turn:

- plan: ``POST /workspaces/bench/drafts/{user}/plans`` of a 100-entry draft
  (each client plans its own user's draft, so plans are real work, not a cache);
- status: ``GET /pipelines/{id}`` of a pipeline the client planned;
- baseline: ``GET /workspaces/bench`` — a trivial authenticated GET (the token
  check, one cached read), measured in the same run, by the same clients.

Targets (the product notes' figures for creating and polling a job): p99 under
150 ms to create a plan and under 100 ms to read a status.

The raw PostgreSQL floor, measured in the same run: the same number of clients
each saving what one plan saves (the 101 event rows of a real plan, copied,
under the events table's EXCLUSIVE lock as the recorder takes it, one
transaction each), with nothing else — no HTTP, no planning, no projections.
A plan cannot be faster than its own save under this load (``floor_p50_ms``,
``floor_p99_ms``).

Every wait has a deadline: a server that does not come up, or a request that
takes more than 30 s, fails the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

from bench.common import database_from_env, print_result, temporary_schema
from bench.sse import percentile
from infrastructure.postgres.database import Database
from infrastructure.settings import Settings
from interfaces.bootstrap import Runtime

CLIENTS = int(os.environ.get("BENCH_API_CLIENTS", "20"))
SERVERS = int(os.environ.get("BENCH_API_SERVERS", "1"))
REQUESTS = int(os.environ.get("BENCH_API_REQUESTS", "50"))
ENTRIES = 100
WORKSPACE = "bench"
START_DEADLINE_S = 60
REQUEST_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(database: Database, schema: str, log: Path) -> Iterator[str]:
    """``publishd serve`` on ``schema``, up once ``/healthz`` answers; stopped at the end."""
    port = free_port()
    env = os.environ | {
        "PUBLISHD_DATABASE_URL": database.conninfo,
        "PUBLISHD_DB_SCHEMA": schema,
        "PUBLISHD_LOG_LEVEL": "WARNING",
        "PUBLISHD_RATE_LIMIT": "100000",
        "PUBLISHD_RATE_LIMIT_BURST": "100000",
    }
    with log.open("wb") as out:
        command = [sys.executable, "-m", "interfaces.cli", "serve", "--port", str(port)]
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + START_DEADLINE_S
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"publishd serve did not come up:\n{log.read_text()[-3000:]}")
                time.sleep(0.1)  # a starting process: nothing to wait on
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def prepare(database: Database, schema: str) -> tuple[str, str]:
    """The workspace, one 100-entry draft per client; an admin token and the events table."""
    runtime = Runtime.build(Settings(database_url=database.conninfo, db_schema=schema))
    try:
        app = runtime.app
        app.create_workspace(WORKSPACE, {"type": "sandbox", "base_url": "http://127.0.0.1:9/"})
        app.register_schema(WORKSPACE, "books", {})
        for client in range(CLIENTS):
            for n in range(ENTRIES):
                path = f"books/c{client}-b{n}.json"
                app.write_draft_file(WORKSPACE, f"user{client}", path, {"title": f"Book {n}"})
        return runtime.tokens.create_token(None, [], admin=True), runtime.events_table
    finally:
        runtime.close()


async def measure(urls: list[str], token: str) -> dict[str, list[float]]:
    """Client ``n`` talks to ``urls[n % len(urls)]``: several serve processes share the load."""
    timings: dict[str, list[float]] = {"plan": [], "status": [], "baseline": []}
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    headers = {"Authorization": f"Bearer {token}"}
    async with contextlib.AsyncExitStack() as stack:
        https = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=url, headers=headers, limits=limits, timeout=REQUEST_TIMEOUT_S
                )
            )
            for url in urls
        ]

        async def timed(
            http: httpx.AsyncClient, kind: str, method: str, path: str, expect: int
        ) -> httpx.Response:
            started = time.perf_counter()
            response = await http.request(method, path)
            timings[kind].append((time.perf_counter() - started) * 1000)
            if response.status_code != expect:
                raise SystemExit(f"{method} {path}: {response.status_code} {response.text[:500]}")
            return response

        async def client(n: int) -> None:
            http = https[n % len(https)]
            draft = f"/workspaces/{WORKSPACE}/drafts/user{n}"
            pipeline_id = None
            for _ in range(REQUESTS):
                planned = await timed(http, "plan", "POST", f"{draft}/plans", 201)
                pipeline_id = pipeline_id or planned.json()["pipeline_id"]
                await timed(http, "status", "GET", f"/pipelines/{pipeline_id}", 200)
                await timed(http, "baseline", "GET", f"/workspaces/{WORKSPACE}", 200)

        await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    return timings


async def save_floor(database: Database, schema: str, events_table: str) -> list[float]:
    """Each client saves a copy of one real plan's events, ``REQUESTS`` times, as the recorder
    does: lock the events table, insert the rows from arrays, commit (latencies in ms)."""
    events = sql.Identifier(schema, events_table)
    floor = sql.Identifier(schema, "floor_events")
    async with await psycopg.AsyncConnection.connect(database.conninfo, autocommit=True) as conn:
        await conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(floor, events))
        cursor = await conn.execute(
            sql.SQL(
                "SELECT originator_version, topic, state FROM {} WHERE originator_id = "
                "(SELECT originator_id FROM {} WHERE topic LIKE %s LIMIT 1) "
                "ORDER BY originator_version"
            ).format(events, events),
            ("%PipelinePlanned",),
        )
        plan = await cursor.fetchall()
    if len(plan) < ENTRIES:
        raise SystemExit(f"found {len(plan)} events of a plan to copy, expected {ENTRIES}+")
    lock = sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(floor)
    insert = sql.SQL(
        "INSERT INTO {} (originator_id, originator_version, topic, state) "
        "SELECT %s, * FROM unnest(%s::int8[], %s::text[], %s::bytea[])"
    ).format(floor)
    versions, topics, states = ([row[i] for row in plan] for i in range(3))
    timings: list[float] = []

    async def client() -> None:
        limit = f"-c lock_timeout={REQUEST_TIMEOUT_S}s -c statement_timeout={REQUEST_TIMEOUT_S}s"
        connect = psycopg.AsyncConnection.connect(database.conninfo, options=limit)
        async with await connect as conn:
            for _ in range(REQUESTS):
                started = time.perf_counter()
                async with conn.transaction():
                    await conn.execute(lock)
                    await conn.execute(insert, (uuid.uuid4(), versions, topics, states))
                timings.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return timings


def main() -> None:
    database = database_from_env()
    with temporary_schema(database, "bench_api") as schema:
        token, events_table = prepare(database, schema)
        with contextlib.ExitStack() as servers:
            urls = [
                servers.enter_context(serving(database, schema, Path(f"/tmp/{schema}-{n}.log")))
                for n in range(SERVERS)
            ]
            asyncio.run(measure(urls, token))  # warm-up: caches, pools, the planner's imports
            timings = asyncio.run(measure(urls, token))
        timings["floor"] = asyncio.run(save_floor(database, schema, events_table))
    figures: dict[str, Any] = {
        "clients": CLIENTS,
        "servers": SERVERS,
        "requests_per_kind": CLIENTS * REQUESTS,
    }
    for kind, values in timings.items():
        figures[f"{kind}_p50_ms"] = round(percentile(values, 50), 1)
        figures[f"{kind}_p99_ms"] = round(percentile(values, 99), 1)
    figures["plan_p99_target_met"] = figures["plan_p99_ms"] < 150
    figures["status_p99_target_met"] = figures["status_p99_ms"] < 100
    print(
        f"{CLIENTS} clients, {SERVERS} serve process(es):"
        f" plan p50 {figures['plan_p50_ms']} ms, p99 {figures['plan_p99_ms']} ms;"
        f" status p50 {figures['status_p50_ms']} ms, p99 {figures['status_p99_ms']} ms;"
        f" baseline p99 {figures['baseline_p99_ms']} ms;"
        f" PostgreSQL floor of a plan's save p50 {figures['floor_p50_ms']} ms,"
        f" p99 {figures['floor_p99_ms']} ms"
    )
    print_result(**figures)


if __name__ == "__main__":
    main()
