"""Fault injection: the misbehaviour of a real content service, on demand.

publishd's retry, idempotency and rate-limit handling can only be shown to work
against a service that fails. Random faults draw from one seeded RNG so that a
test (sequential requests, fixed ``seed``) sees the same failures every run.

``PUT /_admin/faults`` replaces the whole configuration with its body (the
fields of ``FaultConfig``; ``{}`` turns every fault off). One fault is not
random but staged, for the race a paged reader must survive:

    PUT /_admin/faults {"delete_during_listing": {"collection": "books", "after_offset": 100}}

The first ``GET /collections/books/items`` page that ends at or past item 100
(``offset + len(items) >= after_offset``) is served as it was, and then the
last item of that page that nothing references is deleted, once: every later
item moves one place forward, so the item that was first on the next page is
now last on this one and a reader going on at the next offset never sees it.
A page whose items are all referenced deletes nothing and the fault waits for
the next page. ``GET /_admin/stats`` counts it as ``deleted_during_listing``.

The real rate limit (``rate_limit`` requests per ``rate_window_s`` seconds) is a
sliding window: at most N requests are let through in any trailing window. That
is the strictest reading of a service's "N per minute" (no 2N across the edge
of two fixed windows), so a client that paces itself against the sandbox paces
itself against the real service too. Only requests let through count: a 429
costs the client its wait and nothing more, or a client retrying early would be
locked out for good. Over the limit the answer is 429 ``too_many_requests`` with
``Retry-After`` (whole seconds until the oldest request leaves the window); the
random 429s of ``rate_limit_429_rate`` stay ``rate_limited``, and the stats
count both as ``rate_limited``. While a limit is set, every answer says where
the client stands (``X-RateLimit-Limit``, ``X-RateLimit-Remaining``), so a
client can slow down before it ever sees a 429.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class ListingDelete:
    """Delete one listed item of ``collection`` once a page reaches ``after_offset``."""

    collection: str
    after_offset: int = 0

    @classmethod
    def from_json(cls, raw: Any) -> ListingDelete:
        if not isinstance(raw, dict) or set(raw) - {"collection", "after_offset"}:
            raise ValueError("delete_during_listing takes {'collection', 'after_offset'}")
        collection, after = raw.get("collection"), raw.get("after_offset", 0)
        if not isinstance(collection, str) or not collection:
            raise ValueError("delete_during_listing.collection must be a collection name")
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise ValueError("delete_during_listing.after_offset must be a non-negative integer")
        return cls(collection, after)


@dataclass(frozen=True)
class FaultConfig:
    latency_ms: float = 0.0
    """Added before every request is handled."""
    fail_rate: float = 0.0
    """Share of requests answered 503 without being applied."""
    lost_response_rate: float = 0.0
    """Share of writes that are applied and then answered 502, as if the answer was lost."""
    rate_limit_429_rate: float = 0.0
    """Share of requests answered 429 with ``Retry-After: retry_after_s``."""
    rate_limit: float | None = None
    """A real limit: requests per ``rate_window_s`` (a sliding window); excess ones get 429."""
    rate_window_s: float = 1.0
    """The window of ``rate_limit``: 1.0 for N/s, 60.0 for N/min."""
    retry_after_s: int = 1
    outage: bool = False
    """Every request is answered 503 until this is turned off."""
    auth_token: str | None = None
    """When set, requests without ``Authorization: Bearer <token>`` are a 401."""
    seed: int | None = None
    """Seeds the RNG that decides the random faults."""
    delete_during_listing: ListingDelete | None = None
    """The staged delete of the module docstring."""

    @classmethod
    def from_json(cls, raw: Any) -> FaultConfig:
        """Build from an admin request body; a bad body is a ``ValueError``."""
        if not isinstance(raw, dict):
            raise ValueError("fault config must be an object")
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown fault options: {sorted(unknown)}")
        staged = raw.get("delete_during_listing")
        if staged is not None:
            raw = {**raw, "delete_during_listing": ListingDelete.from_json(staged)}
        try:
            config = cls(**raw)
        except TypeError as exc:
            raise ValueError(str(exc)) from exc
        config.validate()
        return config

    def validate(self) -> None:
        for name in ("fail_rate", "lost_response_rate", "rate_limit_429_rate"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a number between 0 and 1")
        if not isinstance(self.latency_ms, int | float) or self.latency_ms < 0:
            raise ValueError("latency_ms must be a non-negative number")
        if self.rate_limit is not None and not _positive_number(self.rate_limit):
            raise ValueError("rate_limit must be a positive number of requests per window")
        if not _positive_number(self.rate_window_s):
            raise ValueError("rate_window_s must be a positive number of seconds")
        if not isinstance(self.retry_after_s, int) or self.retry_after_s < 0:
            raise ValueError("retry_after_s must be a non-negative integer")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _positive_number(value: object) -> bool:
    """A finite number above 0 (``True`` is not a number here, nor is infinity a rate)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


@dataclass(frozen=True)
class Fault:
    """An answer that replaces the real one; ``kind`` names its counter in the stats."""

    kind: str
    status: int
    code: str
    message: str
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Admission:
    """The injector's word on one request: a fault to answer instead, or None to handle it.

    ``headers`` go on whatever answer the request gets, the real one or the fault.
    """

    fault: Fault | None
    headers: Mapping[str, str]


_UNAUTHORIZED = Fault("unauthorized", 401, "unauthorized", "missing or wrong bearer token")
_OUTAGE = Fault("outage", 503, "unavailable", "the service is down (outage)")
_FAILED = Fault("failed", 503, "unavailable", "injected failure, nothing applied")
_LOST = Fault("lost_responses", 502, "bad_gateway", "injected lost response (the write applied)")


class SlidingWindow:
    """At most ``limit`` requests let through in any trailing ``window_s`` seconds.

    A fractional limit keeps its average rate with a whole number of requests:
    0.5 per second is 1 per 2 s, 2.5 per second is 2 per 0.8 s.
    """

    def __init__(self, limit: float, window_s: float, clock: Callable[[], float]) -> None:
        self.limit = max(1, math.floor(limit))
        self.window_s = window_s * self.limit / limit
        self._clock = clock
        self._admitted: deque[float] = deque()
        """Times of the requests let through and still in the window, oldest first."""

    def wait(self) -> float:
        """Seconds until the oldest request leaves a full window; 0 when there is room."""
        now = self._prune()
        if len(self._admitted) < self.limit:
            return 0.0
        return self._admitted[0] + self.window_s - now

    def admit(self) -> None:
        self._admitted.append(self._clock())

    def remaining(self) -> int:
        self._prune()
        return max(0, self.limit - len(self._admitted))

    def _prune(self) -> float:
        now = self._clock()
        while self._admitted and self._admitted[0] <= now - self.window_s:
            self._admitted.popleft()
        return now


class FaultInjector:
    """Decides, per request, whether the sandbox misbehaves, and counts what it did."""

    def __init__(self, config: FaultConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.stats: Counter[str] = Counter()
        self._clock = clock
        self.configure(config)

    def configure(self, config: FaultConfig) -> None:
        """Replace the configuration; the RNG and the rate window start afresh."""
        config.validate()
        self.config = config
        self._rng = random.Random(config.seed)
        self._window = (
            None
            if config.rate_limit is None
            else SlidingWindow(config.rate_limit, config.rate_window_s, self._clock)
        )
        self._listing_delete_pending = config.delete_during_listing is not None

    @property
    def latency_s(self) -> float:
        return self.config.latency_ms / 1000

    def before(self, authorization: str | None) -> Admission:
        """Whether a fault pre-empts the request; a request let through counts in the window.

        The window is asked before the random 429 and fills after it, so that
        neither kind of 429 takes a place in the window.
        """
        config, window = self.config, self._window
        if config.auth_token is not None and authorization != f"Bearer {config.auth_token}":
            return self._refuse(_UNAUTHORIZED)
        if config.outage:
            return self._refuse(_OUTAGE)
        if window is not None:
            wait = window.wait()
            if wait > 0:
                return self._refuse(self._over_limit(window, max(1, math.ceil(wait))))
        if self._roll(config.rate_limit_429_rate):
            return self._refuse(self._too_many(config.retry_after_s))
        if window is not None:
            window.admit()
        if self._roll(config.fail_rate):
            return self._refuse(_FAILED)
        return Admission(None, self._rate_headers())

    def lose_response(self) -> Fault | None:
        """After a write was applied: the answer that replaces it, if it is 'lost'."""
        if self._roll(self.config.lost_response_rate):
            return self._count(_LOST)
        return None

    def deletes_after_page(self, collection: str, end: int) -> bool:
        """Whether a listing page of ``collection`` ending at ``end`` stages the delete."""
        staged = self.config.delete_during_listing
        return (
            self._listing_delete_pending
            and staged is not None
            and staged.collection == collection
            and end >= staged.after_offset
        )

    def deleted_after_page(self) -> None:
        self._listing_delete_pending = False
        self.stats["deleted_during_listing"] += 1

    def _refuse(self, fault: Fault) -> Admission:
        return Admission(self._count(fault), self._rate_headers())

    def _count(self, fault: Fault) -> Fault:
        self.stats[fault.kind] += 1
        return fault

    def _rate_headers(self) -> dict[str, str]:
        window = self._window
        if window is None:
            return {}
        return {
            "X-RateLimit-Limit": str(window.limit),
            "X-RateLimit-Remaining": str(window.remaining()),
        }

    def _too_many(self, retry_after: int) -> Fault:
        headers = {"Retry-After": str(retry_after)}
        return Fault("rate_limited", 429, "rate_limited", "too many requests", headers)

    def _over_limit(self, window: SlidingWindow, retry_after: int) -> Fault:
        message = (
            f"at most {window.limit} requests per {window.window_s:g} s; retry in {retry_after} s"
        )
        headers = {"Retry-After": str(retry_after)}
        return Fault("rate_limited", 429, "too_many_requests", message, headers)

    def _roll(self, rate: float) -> bool:
        """Draw only when a rate is set, so enabling one fault doesn't shift another's draws."""
        return rate > 0 and self._rng.random() < rate
