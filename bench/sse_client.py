"""A minimal SSE client on asyncio streams, for benchmarks.

A thousand httpx streams in one process would measure httpx; this reads the
chunked body straight off the socket and splits frames on blank lines, so the
figures describe the server. It records each event's ``id:`` and the wall
time it arrived, and returns when the server ends the stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Received:
    id: int
    at: float


async def stream(
    port: int,
    path: str,
    token: str,
    on_event: Callable[[Received], None],
    *,
    on_connect: Callable[[], None] | None = None,
    host: str = "127.0.0.1",
) -> None:
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head.decode(errors="replace"))
    if on_connect is not None:
        on_connect()
    buffer = b""
    try:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            if size == 0:
                return
            chunk = await reader.readexactly(size + 2)
            at = time.time()
            buffer += chunk[:-2]
            *frames, buffer = buffer.replace(b"\r\n", b"\n").split(b"\n\n")
            for frame in frames:
                if frame.startswith(b"id: "):
                    end = frame.index(b"\n")
                    on_event(Received(int(frame[4:end]), at))
    finally:
        writer.close()
