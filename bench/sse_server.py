"""The stream server of ``bench.sse``: the streams app alone, in its own process.

It runs on publishd's own uvicorn configuration (``uvicorn_config``: the
bounded protocol on the chosen HTTP parser and event loop), so a flavour's
figure is what ``publishd serve`` would do with those settings.

Its own process so that the benchmark's client and writers never share its
GIL; the parent binds the listening socket, so clients may connect before
uvicorn is up (their connections queue in the backlog).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from typing import Any

from infrastructure.postgres.database import Database
from infrastructure.postgres.tokens import TokenStore
from infrastructure.settings import Settings

FLAVOURS: dict[str, dict[str, str]] = {
    "h11": {"event_loop": "asyncio", "http_stack": "h11"},  # pure Python
    "httptools": {"event_loop": "uvloop", "http_stack": "httptools"},  # publishd's default
}
"""uvicorn's two stacks, by the name ``BENCH_SSE_SERVERS`` uses, as publishd's settings."""


def serve(fd: int, conninfo: str, schema: str, table: str, flavour: str) -> None:
    """Run in the subprocess: the streams app on an inherited listening socket."""
    from contextlib import asynccontextmanager

    import uvicorn
    from starlette.applications import Starlette

    from infrastructure.postgres.feed.event_feed import EventFeed
    from interfaces.http.auth import Authenticator
    from interfaces.http.errors import install_error_handlers
    from interfaces.http.stream_limits import StreamLimits
    from interfaces.http.streams import stream_routes
    from interfaces.server import uvicorn_config

    feed = EventFeed(conninfo, schema=schema, table=table, pool_size=8)
    tokens = TokenStore(conninfo, schema)
    authenticator = Authenticator(tokens)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> Any:
        tokens.open()
        await feed.start()
        yield
        await feed.aclose()
        tokens.close()

    # the fan-out opens every stream with one token: its allowance must cover them all
    limits = StreamLimits(per_token=10_000)
    app = Starlette(routes=stream_routes(feed, authenticator, limits=limits), lifespan=lifespan)
    install_error_handlers(app)
    settings = Settings.model_validate(FLAVOURS[flavour] | {"max_connections": 10_000})
    config = uvicorn_config(app, settings, fd=fd, backlog=4096, timeout_graceful_shutdown=1)
    uvicorn.Server(config).run()


class Server:
    def __init__(self, database: Database, schema: str, table: str, flavour: str = "h11") -> None:
        if flavour not in FLAVOURS:
            raise ValueError(f"unknown server flavour {flavour!r}: one of {', '.join(FLAVOURS)}")
        self.flavour = flavour
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4096)  # connections queue here until uvicorn accepts them
        self.port = self.sock.getsockname()[1]
        fd = self.sock.fileno()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.sse_server",
                str(fd),
                database.conninfo,
                schema,
                table,
                flavour,
            ],
            pass_fds=[fd],
        )

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.sock.close()


if __name__ == "__main__":
    serve(int(sys.argv[1]), *sys.argv[2:6])
