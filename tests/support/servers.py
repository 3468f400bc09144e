"""Run an ASGI app under a real uvicorn server in a background thread.

Tests that need real HTTP (keep-alive, endless SSE streams, a client in its
own event loop) use this instead of an in-process transport. The socket is
bound before the server starts, so the port is known and free without a race,
and readiness is an event set by uvicorn's own startup, not a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn


class _ReadyServer(uvicorn.Server):
    """A uvicorn server that says when it accepts connections, and stops when told.

    uvicorn polls ``should_exit`` every 0.1 s; waking its loop directly makes
    a test's teardown take milliseconds instead.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        try:
            await super().startup(sockets=sockets)
        finally:
            self.ready.set()

    async def main_loop(self) -> None:
        assert self._wake is not None
        counter = 0
        while not self.should_exit and not await self.on_tick(counter):
            counter = (counter + 1) % 864_000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.1)

    def stop(self) -> None:
        """Thread-safe: ask the server to shut down now."""
        self.should_exit = True
        if self._loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop may be closed already
                self._loop.call_soon_threadsafe(self._wake.set)


@contextlib.contextmanager
def running_server(
    app: Any, *, host: str = "127.0.0.1", startup_timeout: float = 10.0
) -> Iterator[str]:
    """Serve ``app`` until the block ends; yields its base URL, e.g. ``http://127.0.0.1:41234``."""
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say they are
    # TCP, and without it every response waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="auto",
        ws="none",
        timeout_graceful_shutdown=2,
    )
    server = _ReadyServer(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{port}", daemon=True
    )
    thread.start()
    try:
        if not server.ready.wait(startup_timeout) or not server.started:
            raise RuntimeError(f"uvicorn did not start on {host}:{port}")
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        thread.join(timeout=10)
        sock.close()
