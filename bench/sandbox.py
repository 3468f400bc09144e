"""The sandbox's requests/s ceiling, against a bare uvicorn app measured in the same run.

The sandbox must never be what limits a publish benchmark. Each server runs in
its own process (as ``publishd sandbox serve`` does) and one raw asyncio
client with ``--concurrency`` keep-alive connections drives it for ``--seconds``. The baseline is
a bare ASGI app that answers a fixed JSON body under the same uvicorn and the
same client, so the ratio shows what the sandbox's own work costs.

    python -m bench.sandbox [--seconds 3] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx

from bench.common import print_result

SANDBOX = "from infrastructure.sandbox.server import serve; serve(port={port})"
BARE = """
import uvicorn

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"15")]})
    await send({"type": "http.response.body", "body": b'{"status":"ok"}'})

uvicorn.run(app, port={port}, log_level="warning", access_log=False, ws="none")
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def server_process(code: str) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", code.replace("{port}", str(port))])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(f"{url}/healthz", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start: {code[:60]}") from None
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


async def drive(url: str, request: bytes, seconds: float, concurrency: int) -> float:
    """Requests/s that ``concurrency`` keep-alive connections get through in ``seconds``.

    A raw asyncio HTTP/1.1 client, not httpx: httpx spends more CPU per request
    than the server does, and would measure itself.
    """
    host, port = url.removeprefix("http://").split(":")
    done = 0
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection(host, int(port))
        while time.perf_counter() < stop_at:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = int(_header(head, b"content-length") or 0)
            body = await reader.readexactly(length)
            if status >= 400:
                raise RuntimeError(f"{status}: {body[:200]!r}")
            done += 1
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def http_request(method: str, path: str, body: bytes = b"", key: str | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: bench", f"Content-Length: {len(body)}"]
    if body:
        lines.append("Content-Type: application/json")
    if key:
        lines.append(f"Idempotency-Key: {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def define_collection(url: str) -> None:
    async with httpx.AsyncClient(base_url=url) as client:
        await client.put("/collections/books", json={"referenceFields": {}})
        for n in range(10):
            await client.post("/collections/books/items", json={"fieldData": {"n": n}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    bare = http_request("GET", "/healthz")
    listing = http_request("GET", "/collections/books/items?limit=10")
    # One key for every create: replays measure the idempotency path, new keys the store.
    create = http_request("POST", "/collections/books/items", b'{"fieldData": {"n": 1}}')
    replay = http_request("POST", "/collections/books/items", b'{"fieldData": {}}', key="k")

    with server_process(BARE) as url:
        baseline = asyncio.run(drive(url, bare, args.seconds, args.concurrency))
    with server_process(SANDBOX) as url:
        asyncio.run(define_collection(url))
        figures = {
            name: asyncio.run(drive(url, request, args.seconds, args.concurrency))
            for name, request in [("list", listing), ("create", create), ("replay", replay)]
        }
    print(f"bare uvicorn GET      {baseline:8.0f} req/s  (baseline)")
    for name, rate in figures.items():
        print(f"sandbox {name:<14}{rate:8.0f} req/s  ratio {rate / baseline:.2f}")
    print_result(
        baseline_rps=round(baseline),
        list_rps=round(figures["list"]),
        create_rps=round(figures["create"]),
        list_ratio=round(figures["list"] / baseline, 3),
        create_ratio=round(figures["create"] / baseline, 3),
        replay_rps=round(figures["replay"]),
    )


if __name__ == "__main__":
    main()
