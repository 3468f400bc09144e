"""A minimal SSE client on asyncio streams, for benchmarks.

A thousand httpx streams in one process would measure httpx; this reads the
chunked body straight off the socket and splits frames on blank lines, so the
figures describe the server. It records each event's ``id:`` and the wall
time it arrived, and returns when the server ends the stream.

A stream ends only when its pipeline reaches a terminal event, so a writer
that died would leave every reader waiting for ever: ``within`` and
``wait_until`` give each wait of a benchmark a deadline and a message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


class BenchFailure(Exception):
    """A measurement that cannot finish; the message says which wait gave up."""


async def within(awaitable: Awaitable[T], seconds: float, what: str) -> T:
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except TimeoutError:
        raise BenchFailure(f"{what}: not done within {seconds:.0f} s") from None


async def wait_until(
    condition: Callable[[], bool],
    seconds: float,
    what: str,
    *,
    watch: Iterable[asyncio.Task[Any]] = (),
) -> None:
    """Poll ``condition``; give up at the deadline, or as soon as a watched task
    ended without the condition holding (its exception, if any, is raised)."""
    deadline = time.monotonic() + seconds
    tasks = list(watch)
    while not condition():
        for task in tasks:
            if task.done():
                task.result()
                raise BenchFailure(f"{what}: a stream ended before that")
        if time.monotonic() > deadline:
            raise BenchFailure(f"{what}: not reached within {seconds:.0f} s")
        await asyncio.sleep(0.01)


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
    host: str = "127.0.0.1",
) -> None:
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise BenchFailure(f"GET {path}: {head.decode(errors='replace').splitlines()[0]}")
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
