"""``publishd serve``: build the runtime, announce it, run uvicorn until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from infrastructure.settings import Settings
from interfaces import logs
from interfaces.bootstrap import Runtime, build_http_app


def local_admin_token(runtime: Runtime) -> str:
    """The data directory's admin token, created on first use (embedded database only)."""
    path: Path = runtime.settings.data_dir / "admin-token"
    if path.exists():
        token = path.read_text().strip()
        if runtime.tokens.lookup(token) is not None:
            return token
    token = runtime.tokens.create_token(None, ["read", "write", "publish", "admin"], admin=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


_REFUSAL = b'{"error":"unavailable","message":"too many open connections, retry later"}'
_REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_REFUSAL), _REFUSAL)
)


class _CutOffAfterClose:
    """A transport whose ``close`` cuts the connection off if the peer never takes the rest.

    asyncio's ``close`` waits to flush what is buffered: a client that stopped
    reading (a stream dropped for it) would hold its socket, and a connection
    slot, for as long as it likes. After ``grace`` the connection is aborted.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop, grace: float):
        self._transport = transport
        self._loop = loop
        self._grace = grace

    def close(self) -> None:
        self._transport.close()
        if self._transport.get_write_buffer_size():
            self._loop.call_later(self._grace, self._transport.abort)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


if TYPE_CHECKING:  # the checker sees the bounds as the h11 protocol they extend
    _Protocol = H11Protocol
else:
    _Protocol = object


class _Bounded(_Protocol):
    """The bounds uvicorn lacks, over either of its HTTP/1.1 protocols.

    uvicorn times out only an idle keep-alive connection after a response: a
    connection that never sends its request head (or sends half of it) would
    hold a file descriptor for good, and enough of them stop the server
    accepting anyone. Each connection must deliver a complete request head
    within ``header_timeout`` of opening or of its last response; past
    ``max_connections`` a new connection is answered 503 and closed. A client
    that stops reading what it is sent (the write buffer stays full for
    ``stall_timeout``) is cut off: closing alone would wait for it to read.
    """

    header_timeout: float
    max_connections: int
    stall_timeout: float
    _head_timer: asyncio.TimerHandle | None = None
    _stall_timer: asyncio.TimerHandle | None = None

    def _head_started(self) -> bool:
        """Whether the request under way has sent its whole head (or none is expected)."""
        raise NotImplementedError

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stall_timer is None:
            self._stall_timer = self.loop.call_later(self.stall_timeout, self.transport.abort)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        guarded = _CutOffAfterClose(transport, self.loop, self.stall_timeout)
        super().connection_made(guarded)  # type: ignore[arg-type]
        if len(self.connections) > self.max_connections:
            transport.write(_REFUSED)
            transport.close()
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._head_started():
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()
            if self._head_started():
                self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _too_slow(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()


class _BoundedH11(_Bounded, H11Protocol):
    def _head_started(self) -> bool:
        return self.conn.their_state is not h11.IDLE


class _BoundedHttpTools(_Bounded, HttpToolsProtocol):  # type: ignore[misc]
    """httptools calls ``on_headers_complete`` once a head is parsed; pipelined ones wait."""

    _heads = 0

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._heads += 1

    def on_response_complete(self) -> None:
        self._heads = max(0, self._heads - 1)  # a refused head (400) was never counted
        super().on_response_complete()

    def _head_started(self) -> bool:
        return self._heads > 0


HTTP_STACKS: dict[str, type[_Bounded]] = {"h11": _BoundedH11, "httptools": _BoundedHttpTools}
"""uvicorn's HTTP/1.1 parsers by name: pure Python (h11) or C (httptools, the faster)."""


def guarded_protocol(
    header_timeout: float, max_connections: int, stall_timeout: float, stack: str = "httptools"
) -> type[_Bounded]:
    """The HTTP protocol of ``stack`` with publishd's bounds (see ``_Bounded``)."""
    bounds = {
        "header_timeout": header_timeout,
        "max_connections": max_connections,
        "stall_timeout": stall_timeout,
    }
    return type(f"Guarded{HTTP_STACKS[stack].__name__}", (HTTP_STACKS[stack],), bounds)


def uvicorn_config(app: ASGIApp, settings: Settings, **options: Any) -> uvicorn.Config:
    """The server's bounds on connections, shared by ``serve`` and the tests that check them."""
    return uvicorn.Config(
        app,
        http=guarded_protocol(
            settings.header_timeout_seconds,
            settings.max_connections,
            settings.stream_send_timeout_seconds,
            settings.http_stack,
        ),
        loop=settings.event_loop,
        log_config=None,  # publishd's own (``interfaces/logs.py``), set up by the command
        timeout_keep_alive=max(1, round(settings.keep_alive_seconds)),
        log_level="warning",
        access_log=False,
        **options,
    )


class _Server(uvicorn.Server):
    """uvicorn, ending our endless streams as soon as a stop signal arrives.

    uvicorn waits for open connections before it runs the lifespan shutdown;
    SSE streams notice by themselves, NDJSON streams would hold it open.
    """

    def __init__(self, config: uvicorn.Config, runtime: Runtime) -> None:
        super().__init__(config)
        self._runtime = runtime

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        for feed in self._runtime.feeds:
            feed.end_streams()
        super().handle_exit(sig, frame)


def serve(settings: Settings, *, announce: bool = True) -> int:
    logs.configure(settings.log_format, settings.log_level)
    runtime = Runtime.build(settings)
    try:
        app = build_http_app(runtime)
        if announce:
            url = f"http://{settings.host}:{settings.port}"
            print(f"publishd listening on {url}", flush=True)
            if settings.database_url is None:
                token = local_admin_token(runtime)
                print(f"local admin token: {token}", flush=True)
                print(f"(also in {settings.data_dir / 'admin-token'})", flush=True)
        # uvicorn handles SIGTERM/SIGINT: it stops accepting, runs the lifespan
        # shutdown (streams closed, workers' in-flight entries recorded), then
        # re-raises the signal into the handler it found. Ours makes that a
        # normal return, so a stopped server exits 0.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)
        config = uvicorn_config(
            app, settings, host=settings.host, port=settings.port, timeout_graceful_shutdown=10
        )
        _Server(config, runtime).run()
    finally:
        runtime.close()
    return 0
