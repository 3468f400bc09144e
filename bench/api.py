"""The API's latency under 20 concurrent clients: planning a draft, reading a status.

    PUBLISHD_DATABASE_URL=postgresql://... python -m bench.api

``publishd serve`` runs as a process of its own on a throwaway schema (its
workers and projections too, as in production); this process is the clients:
``BENCH_API_CLIENTS`` (default 20) asyncio tasks on one httpx client, each
sending ``BENCH_API_REQUESTS`` (default 50) requests of each kind in turn:

- plan: ``POST /workspaces/bench/drafts/{user}/plans`` of a 100-entry draft
  (each client plans its own user's draft, so plans are real work, not a cache);
- status: ``GET /pipelines/{id}`` of a pipeline the client planned;
- baseline: ``GET /workspaces/bench`` — a trivial authenticated GET (the token
  check, one cached read), measured in the same run, by the same clients.

Targets (the product notes' figures for creating and polling a job): p99 under
150 ms to create a plan and under 100 ms to read a status. Every wait has a
deadline: a server that does not come up, or a request that takes more than
30 s, fails the run.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.common import database_from_env, print_result, temporary_schema
from bench.sse import percentile
from infrastructure.postgres.database import Database
from infrastructure.settings import Settings
from interfaces.bootstrap import Runtime

CLIENTS = int(os.environ.get("BENCH_API_CLIENTS", "20"))
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


def prepare(database: Database, schema: str) -> str:
    """The workspace, one 100-entry draft per client, and an admin token."""
    runtime = Runtime.build(Settings(database_url=database.conninfo, db_schema=schema))
    try:
        app = runtime.app
        app.create_workspace(WORKSPACE, {"type": "sandbox", "base_url": "http://127.0.0.1:9/"})
        app.register_schema(WORKSPACE, "books", {})
        for client in range(CLIENTS):
            for n in range(ENTRIES):
                path = f"books/c{client}-b{n}.json"
                app.write_draft_file(WORKSPACE, f"user{client}", path, {"title": f"Book {n}"})
        return runtime.tokens.create_token(None, [], admin=True)
    finally:
        runtime.close()


async def measure(url: str, token: str) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {"plan": [], "status": [], "baseline": []}
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=REQUEST_TIMEOUT_S
    ) as http:

        async def timed(kind: str, method: str, path: str, expect: int) -> httpx.Response:
            started = time.perf_counter()
            response = await http.request(method, path)
            timings[kind].append((time.perf_counter() - started) * 1000)
            if response.status_code != expect:
                raise SystemExit(f"{method} {path}: {response.status_code} {response.text[:500]}")
            return response

        async def client(n: int) -> None:
            draft = f"/workspaces/{WORKSPACE}/drafts/user{n}"
            pipeline_id = None
            for _ in range(REQUESTS):
                planned = await timed("plan", "POST", f"{draft}/plans", 201)
                pipeline_id = pipeline_id or planned.json()["pipeline_id"]
                await timed("status", "GET", f"/pipelines/{pipeline_id}", 200)
                await timed("baseline", "GET", f"/workspaces/{WORKSPACE}", 200)

        await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    return timings


def main() -> None:
    database = database_from_env()
    with temporary_schema(database, "bench_api") as schema:
        token = prepare(database, schema)
        log = Path(f"/tmp/{schema}.log")
        with serving(database, schema, log) as url:
            asyncio.run(measure(url, token))  # warm-up: caches, pools, the planner's imports
            timings = asyncio.run(measure(url, token))
    figures: dict[str, Any] = {"clients": CLIENTS, "requests_per_kind": CLIENTS * REQUESTS}
    for kind, values in timings.items():
        name = "baseline" if kind == "baseline" else kind
        figures[f"{name}_p50_ms"] = round(percentile(values, 50), 1)
        figures[f"{name}_p99_ms"] = round(percentile(values, 99), 1)
    figures["plan_p99_target_met"] = figures["plan_p99_ms"] < 150
    figures["status_p99_target_met"] = figures["status_p99_ms"] < 100
    print(
        f"{CLIENTS} clients: plan p50 {figures['plan_p50_ms']} ms, p99 {figures['plan_p99_ms']} ms;"
        f" status p50 {figures['status_p50_ms']} ms, p99 {figures['status_p99_ms']} ms;"
        f" baseline p99 {figures['baseline_p99_ms']} ms"
    )
    print_result(**figures)


if __name__ == "__main__":
    main()
