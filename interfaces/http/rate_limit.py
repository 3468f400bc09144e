"""API.md §9: requests per second per token, with a burst; over it 429 ``rate_limited``.

A token bucket per credential, kept before authentication so a flood costs no
token lookup: the key is the bearer token or stream ticket as sent (hashed, so
no secret sits in memory longer than the request), or the client's address for
requests without one. An unknown token is limited like a real one; it is
refused with 401 once it gets through. ``/healthz`` is never limited: a probe
must see a busy server as alive.

Buckets that have refilled are worth nothing (a fresh bucket is full), so
when the table reaches its size bound those go first; memory stays bounded
whatever keys a client invents.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

UNLIMITED_PATHS = frozenset({"/healthz"})


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimit:
    """ASGI middleware: ``rate`` requests a second per credential, up to ``burst`` at once."""

    def __init__(
        self,
        app: ASGIApp,
        rate: float,
        burst: int,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limit needs rate > 0 and burst >= 1")
        self.app = app
        self.rate = rate
        self.burst = float(burst)
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: dict[bytes, _Bucket] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        wait = self._take(_key(scope))
        if wait is None:
            await self.app(scope, receive, send)
            return
        retry_after = max(1, math.ceil(wait))
        body = json.dumps(
            {
                "error": "rate_limited",
                "message": f"more than {self.rate:g} requests a second (burst "
                f"{self.burst:g}) for this token: retry after {retry_after} s",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(retry_after).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _take(self, key: bytes) -> float | None:
        """None when the request may go; else the seconds until it could."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._forget_full(now)
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        refill = self.burst / self.rate
        self._buckets = {k: b for k, b in self._buckets.items() if now - b.at < refill}
        if len(self._buckets) >= self._max_keys:
            self._buckets.clear()  # (every key busy at once: start them all afresh)


def _key(scope: Scope) -> bytes:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return b"t" + hashlib.sha256(value).digest()
    ticket = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("ticket")
    if ticket:
        return b"t" + hashlib.sha256(ticket[0].encode()).digest()
    client = scope.get("client")
    return b"c" + (client[0] if client else "").encode()
