"""Publish throughput: a pipeline of creates against the sandbox, beside the connector's ceiling.

``python -m bench.run`` (needs ``PUBLISHD_DATABASE_URL``; works in its own
schema and drops it). The sandbox runs in a subprocess (``publishd sandbox
serve``) so it does not share the GIL with publishd; the worker
(``Worker.run_one``) and the projections run in this process, as in
``publishd serve``.

The run sends creates in bulk (``connector.batch_limits.create`` records per
request, 100 for the sandbox), so every baseline sends the same bulk requests:
a ceiling of single creates would compare a hundred requests with one.

Two runs, each timed from ``request_run`` to the terminal state:

1. ``--entries`` creates at 0 ms latency. The ceiling is the same requests
   (same folder, same fields, the same batches through ``create_many``, new
   idempotency keys) sent straight to the sandbox through the same client
   (the workspace's connector) at the same concurrency, in the same run:
   ``ratio`` is what the run engine keeps of it, in entries/s.
2. ``--latency-entries`` creates with ``--latency-ms`` injected by the sandbox.
   The ideal is ``concurrency * batch / latency`` entries/s, or the sandbox's
   own ceiling at that latency (a raw asyncio client sending the same bulk
   requests, measured here) if lower.

A raw asyncio client's rate at 0 ms (bulk requests, counted in creates) is
printed too: it is the sandbox's own ceiling, so ``connector / raw`` shows what
the HTTP client costs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
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
from domain.connector_config import BATCH_LIMITS
from domain.draft import Draft
from infrastructure.settings import Settings
from interfaces.bootstrap import Runtime

WORKSPACE = "bench"
FOLDER = "books"
DRAFT_SAVE = 500
"""Draft files per save while setting up (well under the ~1,100-event save trap)."""


@contextlib.contextmanager
def sandbox_process(*, quiet: bool = False, rate_limit: str | None = None) -> Iterator[str]:
    """``publishd sandbox serve`` on a free port, until the block ends.

    ``quiet`` drops its stderr: crash trials make it log every request whose
    client was killed mid-call. ``rate_limit`` (``"60/min"``, ``"5/s"``) limits
    every request from the first, setup included; a bench that must seed the
    sandbox first turns the limit on afterwards (``PUT /_admin/faults``).
    """
    port = free_port()
    command = [sys.executable, "-m", "interfaces.cli", "sandbox", "serve", "--port", str(port)]
    if rate_limit is not None:
        command += ["--rate-limit", rate_limit]
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


def connector_ceiling(runtime: Runtime, first: int, count: int, concurrency: int) -> float:
    """The run's requests, straight through the workspace's connector: entries/s.

    Bulk requests of ``batch_limits.create`` books through ``create_many``, at
    most ``concurrency`` in flight, as the run engine sends them (it cuts the
    batches in path order, this in number order: the same sizes and fields).
    """
    workspace = runtime.app.workspace(WORKSPACE)
    tag = uuid.uuid4().hex

    async def run() -> float:
        connector = runtime.connector_for(workspace)
        size = connector.batch_limits.create
        slots = asyncio.Semaphore(concurrency)

        async def batch(start: int) -> None:
            items = [book(n) for n in range(start, min(first + count, start + size))]
            async with slots:
                await connector.create_many(FOLDER, items, f"ceiling-{tag}-{start}")

        try:
            started = time.perf_counter()
            await asyncio.gather(*(batch(s) for s in range(first, first + count, size)))
            return count / (time.perf_counter() - started)
        finally:
            await runtime.aclose_connectors()

    return asyncio.run(run())


def raw_ceiling(url: str, seconds: float, concurrency: int, batch: int) -> float:
    """The sandbox's own ceiling for bulk creates of ``batch`` books: creates/s."""
    items = [{"fieldData": {"title": "raw", "n": n}} for n in range(batch)]
    body = json.dumps({"items": items}).encode()
    request = http_request("POST", f"/collections/{FOLDER}/items", body)
    return batch * asyncio.run(drive(url, request, seconds, concurrency))


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

            batch = BATCH_LIMITS["sandbox"].create
            raw = raw_ceiling(url, 2.0, args.concurrency, batch)
            write_draft(runtime, "fast", 0, args.entries)
            elapsed, fast = publish(runtime, "fast")
            ceiling = connector_ceiling(runtime, 0, fast["entries"], args.concurrency)
            rate = fast["entries"] / elapsed

            latency_s = args.latency_ms / 1000
            admin.put("/_admin/faults", json={"latency_ms": args.latency_ms}).raise_for_status()
            raw_latency = raw_ceiling(url, 3.0, args.concurrency, batch)
            first = args.entries
            write_draft(runtime, "slow", first, args.latency_entries)
            slow_elapsed, slow = publish(runtime, "slow")
            slow_rate = slow["entries"] / slow_elapsed
            connector_latency = connector_ceiling(runtime, first, slow["entries"], args.concurrency)
            ideal = min(args.concurrency * batch / latency_s, raw_latency)
            stats = admin.get("/_admin/stats").json()
        finally:
            admin.close()
            stop.set()
            projections.join(timeout=30)
            runtime.close()

    ms = f"{args.latency_ms:.0f} ms"
    lines = [
        ("sandbox, raw asyncio client (bulk), 0 ms", f"{raw:8.0f} creates/s"),
        ("connector ceiling, 0 ms", f"{ceiling:8.0f} entries/s  ({ceiling / raw:.2f} of raw)"),
        (
            "pipeline, 0 ms",
            f"{rate:8.0f} entries/s  ratio {rate / ceiling:.2f}"
            f"  ({fast['entries']} entries in {elapsed:.2f} s,"
            f" projected after {fast['projected_s']:.2f} s)",
        ),
        (f"sandbox, raw asyncio client (bulk), {ms}", f"{raw_latency:8.0f} creates/s"),
        (f"connector ceiling, {ms}", f"{connector_latency:8.0f} entries/s"),
        (
            f"pipeline, {ms}",
            f"{slow_rate:8.0f} entries/s  ratio {slow_rate / ideal:.2f}"
            f" of ideal {ideal:.0f}  ({slow['entries']} entries in {slow_elapsed:.2f} s)",
        ),
    ]
    for label, figure in lines:
        print(f"{label:<44}{figure}")
    print(
        f"sandbox stats: {stats.get('creates')} creates in {stats.get('bulk_creates', 0)}"
        f" bulk requests of up to {batch}, {stats.get('duplicates', 0)} replays"
    )
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
