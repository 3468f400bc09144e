"""Publish throughput: a pipeline of creates against the sandbox, beside the connector's ceiling.

``python -m bench.run`` (needs ``PUBLISHD_DATABASE_URL``; works in its own
schema and drops it). The sandbox runs in a subprocess (``publishd sandbox
serve``) so it does not share the GIL with publishd; the worker
(``Worker.run_one``) and the projections run in this process, as in
``publishd serve``.

Two runs, each timed from ``request_run`` to the terminal state:

1. ``--entries`` creates at 0 ms latency. The ceiling is the same requests
   (same folder, same fields, new idempotency keys) sent straight to the
   sandbox through the same client (the workspace's connector) at the same
   concurrency, in the same run: ``ratio`` is what the run engine keeps of it.
2. ``--latency-entries`` creates with ``--latency-ms`` injected by the sandbox.
   The ideal is ``concurrency / latency`` entries/s, or the sandbox's own
   ceiling at that latency (a raw asyncio client, measured here) if lower.

A raw asyncio client's rate at 0 ms is printed too: it is the sandbox's own
ceiling, so ``connector / raw`` shows what the HTTP client costs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx

from bench.common import database_from_env, print_result, temporary_schema
from bench.sandbox import drive, free_port, http_request
from domain.draft import Draft
from infrastructure.settings import Settings
from interfaces.bootstrap import Runtime

WORKSPACE = "bench"
FOLDER = "books"
DRAFT_SAVE = 500
"""Draft files per save while setting up (well under the ~1,100-event save trap)."""


@contextlib.contextmanager
def sandbox_process(*, quiet: bool = False) -> Iterator[str]:
    """``publishd sandbox serve`` on a free port, until the block ends.

    ``quiet`` drops its stderr: crash trials make it log every request whose
    client was killed mid-call.
    """
    port = free_port()
    command = [sys.executable, "-m", "interfaces.cli", "sandbox", "serve", "--port", str(port)]
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL if quiet else None)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{url}/healthz", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the sandbox did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def book(n: int) -> dict[str, Any]:
    return {"title": f"Book {n}", "slug": f"book-{n}", "pages": 100 + n % 700, "tags": ["bench"]}


def write_draft(runtime: Runtime, user: str, first: int, count: int) -> None:
    app = runtime.app
    draft = app.draft(WORKSPACE, user) or Draft(workspace_id=WORKSPACE, user=user)
    for start in range(first, first + count, DRAFT_SAVE):
        for n in range(start, min(first + count, start + DRAFT_SAVE)):
            draft.write_file(f"{FOLDER}/book-{n}.json", book(n))
        app.save_all(draft)


def publish(runtime: Runtime, user: str) -> tuple[float, dict[str, Any]]:
    """Plan the user's draft, then time ``request_run`` -> terminal state."""
    app = runtime.app
    pipeline = app.plan(WORKSPACE, user)
    entries = sum(len(pipeline.entries_of(phase)) for phase in pipeline.phases)
    worker = runtime.worker(f"bench-{user}")

    async def run() -> str | None:
        try:
            return await worker.run_one(pipeline.pipeline_id)
        finally:
            await runtime.aclose_connectors()

    started = time.perf_counter()
    app.request_run(pipeline.pipeline_id)
    state = asyncio.run(run())
    elapsed = time.perf_counter() - started
    app.catch_up()
    projected = time.perf_counter() - started
    done = app.pipeline(pipeline.pipeline_id)
    if state != "completed":
        raise SystemExit(f"the run ended {state}: {done.counts()}")
    return elapsed, {"entries": entries, "projected_s": projected}


def connector_ceiling(runtime: Runtime, first: int, count: int) -> float:
    """The run's requests, straight through the workspace's connector: calls/s."""
    workspace = runtime.app.workspace(WORKSPACE)
    tag = uuid.uuid4().hex

    async def run() -> float:
        connector = runtime.connector_for(workspace)
        try:
            started = time.perf_counter()
            await asyncio.gather(
                *(
                    connector.create(FOLDER, book(n), f"ceiling-{tag}-{n}")
                    for n in range(first, first + count)
                )
            )
            return count / (time.perf_counter() - started)
        finally:
            await runtime.aclose_connectors()

    return asyncio.run(run())


def raw_ceiling(url: str, seconds: float, concurrency: int) -> float:
    request = http_request(
        "POST", f"/collections/{FOLDER}/items", b'{"fieldData": {"title": "raw"}}'
    )
    return asyncio.run(drive(url, request, seconds, concurrency))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--latency-entries", type=int, default=2000)
    args = parser.parse_args()

    database = database_from_env()
    with temporary_schema(database, "bench_run") as schema, sandbox_process() as url:
        settings = Settings(
            database_url=database.conninfo,
            db_schema=schema,
            worker_concurrency=args.concurrency,
            lease_seconds=30,
        )
        runtime = Runtime.build(settings)
        stop = threading.Event()
        projections = threading.Thread(target=runtime.run_projections, args=(stop,))
        projections.start()
        admin = httpx.Client(base_url=url, timeout=10)
        try:
            admin.put(f"/collections/{FOLDER}", json={"referenceFields": {}}).raise_for_status()
            runtime.app.create_workspace(WORKSPACE, {"type": "sandbox", "base_url": url})
            runtime.app.register_schema(WORKSPACE, FOLDER, {"fields": []})

            raw = raw_ceiling(url, 2.0, args.concurrency)
            write_draft(runtime, "fast", 0, args.entries)
            elapsed, fast = publish(runtime, "fast")
            ceiling = connector_ceiling(runtime, 0, fast["entries"])
            rate = fast["entries"] / elapsed

            latency_s = args.latency_ms / 1000
            admin.put("/_admin/faults", json={"latency_ms": args.latency_ms}).raise_for_status()
            raw_latency = raw_ceiling(url, 3.0, args.concurrency)
            first = args.entries
            write_draft(runtime, "slow", first, args.latency_entries)
            slow_elapsed, slow = publish(runtime, "slow")
            slow_rate = slow["entries"] / slow_elapsed
            connector_latency = connector_ceiling(runtime, first, slow["entries"])
            ideal = min(args.concurrency / latency_s, raw_latency)
            stats = admin.get("/_admin/stats").json()
        finally:
            admin.close()
            stop.set()
            projections.join(timeout=30)
            runtime.close()

    ms = f"{args.latency_ms:.0f} ms"
    lines = [
        ("sandbox, raw asyncio client, 0 ms", f"{raw:8.0f} creates/s"),
        ("connector ceiling, 0 ms", f"{ceiling:8.0f} calls/s  ({ceiling / raw:.2f} of raw)"),
        (
            "pipeline, 0 ms",
            f"{rate:8.0f} entries/s  ratio {rate / ceiling:.2f}"
            f"  ({fast['entries']} entries in {elapsed:.2f} s,"
            f" projected after {fast['projected_s']:.2f} s)",
        ),
        (f"sandbox, raw asyncio client, {ms}", f"{raw_latency:8.0f} creates/s"),
        (f"connector ceiling, {ms}", f"{connector_latency:8.0f} calls/s"),
        (
            f"pipeline, {ms}",
            f"{slow_rate:8.0f} entries/s  ratio {slow_rate / ideal:.2f}"
            f" of ideal {ideal:.0f}  ({slow['entries']} entries in {slow_elapsed:.2f} s)",
        ),
    ]
    for label, figure in lines:
        print(f"{label:<40}{figure}")
    print(f"sandbox stats: {stats.get('creates')} creates, {stats.get('duplicates', 0)} replays")
    print_result(
        entries=fast["entries"],
        entries_per_s=round(rate, 1),
        connector_ceiling_per_s=round(ceiling, 1),
        ratio=round(rate / ceiling, 3),
        latency_ms=args.latency_ms,
        concurrency=args.concurrency,
        latency_entries_per_s=round(slow_rate, 1),
        latency_ideal_per_s=round(ideal, 1),
        latency_ratio=round(slow_rate / ideal, 3),
        raw_sandbox_per_s=round(raw, 1),
        latency_raw_sandbox_per_s=round(raw_latency, 1),
        latency_connector_ceiling_per_s=round(connector_latency, 1),
    )


if __name__ == "__main__":
    main()
