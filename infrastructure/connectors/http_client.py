"""The connector's HTTP transport: aiohttp, behind a small seam the retry logic reads.

aiohttp was chosen over httpx here because httpx's per-request CPU (1.4-2 ms
on this machine) capped a connector at ~30% of what the sandbox serves; aiohttp
keeps up with a raw asyncio client (measured side by side in the same run).
Transport failures surface as ``TransportError`` subclasses so the caller can
tell "no service there" (``ConnectError``) from a failure mid-call.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL


class TransportError(Exception):
    """No HTTP answer: the request may or may not have reached the service."""


class ConnectError(TransportError):
    """Nothing accepted the connection: no sign of a service."""


class RemoteProtocolError(TransportError):
    """The answer was not well-formed HTTP."""


class ReadTimeout(TransportError):
    """No (complete) answer in time."""


class InvalidAddress(ValueError):
    """The base URL is not one the client can send to: no call could ever succeed."""


@dataclass(frozen=True)
class Response:
    method: str
    path: str
    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON; ``ValueError`` when it is not."""
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class HttpClient:
    """Keep-alive connections to one base URL, at most ``size`` at once.

    A base URL with a path is a prefix: ``http://h/api`` and ``http://h/api/``
    both send ``/collections/x`` to ``http://h/api/collections/x``. Raises
    ``InvalidAddress`` for a URL no request could go to.
    """

    def __init__(
        self, base_url: str, *, size: int, timeout: float, headers: Mapping[str, str]
    ) -> None:
        self._base_url = _base(base_url)
        self._size = size
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._headers = dict(headers)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Created on first use: a session belongs to the running event loop.
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._size, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(
                self._base_url,
                connector=connector,
                timeout=self._timeout,
                headers=self._headers,
                auto_decompress=False,
            )
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Response:
        session = self._open()
        try:
            async with session.request(
                method, path.lstrip("/"), json=json, headers=headers, params=params
            ) as answer:
                body = await answer.read()
                return Response(
                    method,
                    path,
                    answer.status,
                    answer.reason or "",
                    {k.lower(): v for k, v in answer.headers.items()},
                    body,
                )
        except aiohttp.InvalidURL as exc:
            raise InvalidAddress(f"the URL of {method} {path} is not valid") from exc
        except aiohttp.ClientConnectorError as exc:
            raise ConnectError(str(exc)) from exc
        except (aiohttp.ClientResponseError, aiohttp.ClientPayloadError) as exc:
            raise RemoteProtocolError(str(exc)) from exc
        except TimeoutError as exc:
            raise ReadTimeout(f"no answer within {self._timeout.total} s") from exc
        except aiohttp.ClientError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _base(url: str) -> str:
    """The URL with a trailing ``/``, so that paths join under it; checked as aiohttp will."""
    try:
        parsed = URL(url.rstrip("/") + "/")
        parsed.origin()
    except (ValueError, TypeError):
        # Not the parser's message: it would repeat the URL, and with it any credentials.
        raise InvalidAddress("the base URL is not an absolute URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidAddress("the base URL must be http(s)://host[:port][/path]")
    if parsed.query_string or parsed.fragment:
        raise InvalidAddress("the base URL must not have a query or a fragment")
    return str(parsed)


__all__ = [
    "ConnectError",
    "HttpClient",
    "InvalidAddress",
    "ReadTimeout",
    "RemoteProtocolError",
    "Response",
    "TransportError",
]
