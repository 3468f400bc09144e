"""A lean HTTP/1.1 keep-alive client: the connectors' hot path, on asyncio streams.

Why not httpx here: measured against the sandbox on a 2-core machine, httpx
spends 1.4-2 ms of CPU per request (request and URL models, cookie
extraction, anyio cancel scopes, httpcore's pool scan with a ``poll`` per idle
socket: encode/httpx#3215), so a connector could send at best ~500 calls/s to
a service that answers ~2,000. A connector needs little of HTTP: JSON bodies
to one origin, over a fixed number of keep-alive connections. This client does
that in ~0.15 ms of CPU per request.

What it does: one connection per lane (``size`` lanes, FIFO, so ``size`` is
also the concurrency bound); requests with ``Content-Length``; responses with
``Content-Length``, chunked, or read-to-close bodies; 1xx skipped; keep-alive
unless the server says ``close``; an idle connection the server has closed is
replaced, whether that is noticed before reuse or only when the request gets
no byte back on it (servers close idle keep-alive connections at will, so a
request on a reused connection is sent once more on a fresh one, as browsers
do: the connector's writes carry an ``Idempotency-Key``, so a write the server
did see is not applied twice); ``https`` through the default TLS context.
A connection whose exchange failed, timed out or was cancelled is closed,
never reused: its state is unknown.

Errors are ``TransportError`` subclasses named like httpx's, so the connector
can tell "nothing listening" (``ConnectError``, ``ConnectTimeout``) from a
dropped exchange (``ReadError``, ``ReadTimeout``, ``RemoteProtocolError``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

HEAD_LIMIT = 64 * 1024
"""Longest status line + headers accepted."""
_NO_BODY_STATUSES = frozenset({204, 304})


class TransportError(Exception):
    """The exchange did not produce a response."""


class ConnectError(TransportError):
    """Connection refused, host unknown, network unreachable."""


class ConnectTimeout(TransportError):
    pass


class ReadTimeout(TransportError):
    pass


class ReadError(TransportError):
    """The connection dropped during the exchange."""


class RemoteProtocolError(TransportError):
    """The server's answer is not valid HTTP/1.1."""


class _NothingReceived(ReadError):
    """The connection dropped before a single byte of the answer came back."""


@dataclass(frozen=True)
class Response:
    method: str
    path: str
    status: int
    reason: str
    headers: Mapping[str, str]
    """Lower-case names; repeated headers joined with ``, ``."""
    body: bytes

    def json(self) -> Any:
        """The body as JSON; ``ValueError`` when it is not."""
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @property
    def reusable(self) -> bool:
        """False once the server closed it (EOF seen) or the transport is closing."""
        return not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()


class Http1Pool:
    """``size`` keep-alive connections to one origin; a request waits for a free one."""

    def __init__(
        self,
        base_url: str,
        *,
        size: int,
        timeout: float,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        default_port = 443 if url.scheme == "https" else 80
        self._host = url.hostname
        self._port = url.port or default_port
        self._tls = ssl.create_default_context() if url.scheme == "https" else None
        self._prefix = url.path.rstrip("/")
        host_header = url.netloc.rpartition("@")[2]
        fixed = {"Host": host_header, "Accept": "application/json", **(headers or {})}
        self._fixed_head = "".join(f"{_header(k, v)}\r\n" for k, v in fixed.items())
        self._timeout = timeout
        self._lanes: asyncio.Queue[_Connection | None] = asyncio.Queue()
        for _ in range(size):
            self._lanes.put_nowait(None)
        self._open: set[_Connection] = set()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Response:
        target = self._prefix + path + (f"?{urlencode(params)}" if params else "")
        payload = b"" if json is None else _dumps(json)
        head = f"{method} {target} HTTP/1.1\r\n{self._fixed_head}"
        if json is not None:
            head += "Content-Type: application/json\r\n"
        if payload or method in ("POST", "PUT", "PATCH"):
            head += f"Content-Length: {len(payload)}\r\n"
        for name, value in (headers or {}).items():
            head += f"{_header(name, value)}\r\n"
        message = (head + "\r\n").encode("latin-1") + payload

        connection = await self._lanes.get()
        kept: _Connection | None = None
        try:
            if connection is not None and not connection.reusable:
                self._discard(connection)
                connection = None
            async with asyncio.timeout(self._timeout):
                reused = connection is not None
                if connection is None:
                    connection = await self._connect()
                try:
                    response, keep_alive = await _exchange(connection, method, path, message)
                except _NothingReceived:
                    if not reused:
                        raise
                    self._discard(connection)
                    connection = None
                    connection = await self._connect()
                    response, keep_alive = await _exchange(connection, method, path, message)
            if keep_alive:
                kept = connection
            return response
        except TimeoutError:
            raise (ConnectTimeout if connection is None else ReadTimeout)(
                f"no answer within {self._timeout} s"
            ) from None
        finally:
            if connection is not None and kept is None:
                self._discard(connection)
            self._lanes.put_nowait(kept)

    async def _connect(self) -> _Connection:
        try:
            reader, writer = await asyncio.open_connection(
                self._host,
                self._port,
                ssl=self._tls,
                server_hostname=self._host if self._tls else None,
                limit=HEAD_LIMIT,
            )
        except OSError as exc:
            raise ConnectError(str(exc) or type(exc).__name__) from exc
        connection = _Connection(reader, writer)
        self._open.add(connection)
        return connection

    def _discard(self, connection: _Connection) -> None:
        connection.close()
        self._open.discard(connection)

    async def aclose(self) -> None:
        for connection in list(self._open):
            self._discard(connection)
            with contextlib.suppress(OSError):
                await connection.writer.wait_closed()


async def _exchange(
    connection: _Connection, method: str, path: str, message: bytes
) -> tuple[Response, bool]:
    reader, writer = connection.reader, connection.writer
    try:
        writer.write(message)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise _NothingReceived("connection closed before any answer") from exc
        raise ReadError(f"connection closed after {len(exc.partial)} bytes") from exc
    except asyncio.LimitOverrunError as exc:
        raise RemoteProtocolError("response head too long") from exc
    except (ConnectionError, OSError) as exc:
        raise _NothingReceived(str(exc) or type(exc).__name__) from exc
    try:
        while True:
            version, status, reason, headers = _parse_head(head)
            if not 100 <= status < 200:
                break
            head = await reader.readuntil(b"\r\n\r\n")
        if method == "HEAD" or status in _NO_BODY_STATUSES:
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = await _read_chunked(reader)
        elif "content-length" in headers:
            body = await reader.readexactly(_content_length(headers["content-length"]))
        else:
            body = await reader.read()
            headers = {**headers, "connection": "close"}
    except asyncio.IncompleteReadError as exc:
        raise ReadError(f"connection closed after {len(exc.partial)} bytes") from exc
    except asyncio.LimitOverrunError as exc:
        raise RemoteProtocolError("response head too long") from exc
    except (ConnectionError, OSError) as exc:
        raise ReadError(str(exc) or type(exc).__name__) from exc
    tokens = headers.get("connection", "").lower()
    keep_alive = "close" not in tokens and (version == "HTTP/1.1" or "keep-alive" in tokens)
    return Response(method, path, status, reason, headers, body), keep_alive


def _parse_head(head: bytes) -> tuple[str, int, str, dict[str, str]]:
    lines = head[:-4].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise RemoteProtocolError(f"bad status line {lines[0][:100]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise RemoteProtocolError(f"bad header line {line[:100]!r}")
        key, value = name.strip().lower(), value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return parts[0], int(parts[1]), parts[2] if len(parts) > 2 else "", headers


def _content_length(raw: str) -> int:
    values = {v.strip() for v in raw.split(",")}
    if len(values) != 1 or not next(iter(values)).isdigit():
        raise RemoteProtocolError(f"bad Content-Length {raw!r}")
    return int(values.pop())


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        line = await reader.readuntil(b"\r\n")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise RemoteProtocolError(f"bad chunk size {line[:40]!r}") from None
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailers
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise RemoteProtocolError("chunk not followed by CRLF")


def _header(name: str, value: str) -> str:
    """One header line; CR/LF in a name or value would smuggle a header, so they are refused."""
    if any(c in name or c in value for c in "\r\n") or ":" in name:
        raise ValueError(f"invalid header {name!r}")
    return f"{name}: {value}"


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
