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
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
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
    """A real limit in requests/s (bucket of one second); excess requests get 429."""
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
        if self.rate_limit is not None and (
            not isinstance(self.rate_limit, int | float) or self.rate_limit <= 0
        ):
            raise ValueError("rate_limit must be a positive number of requests/s")
        if not isinstance(self.retry_after_s, int) or self.retry_after_s < 0:
            raise ValueError("retry_after_s must be a non-negative integer")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Fault:
    """An answer that replaces the real one; ``kind`` names its counter in the stats."""

    kind: str
    status: int
    code: str
    message: str
    headers: Mapping[str, str] | None = None


_UNAUTHORIZED = Fault("unauthorized", 401, "unauthorized", "missing or wrong bearer token")
_OUTAGE = Fault("outage", 503, "unavailable", "the service is down (outage)")
_FAILED = Fault("failed", 503, "unavailable", "injected failure, nothing applied")
_LOST = Fault("lost_responses", 502, "bad_gateway", "injected lost response (the write applied)")


class FaultInjector:
    """Decides, per request, whether the sandbox misbehaves, and counts what it did."""

    def __init__(self, config: FaultConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.stats: Counter[str] = Counter()
        self._clock = clock
        self.configure(config)

    def configure(self, config: FaultConfig) -> None:
        """Replace the configuration; the RNG and the rate bucket start afresh."""
        config.validate()
        self.config = config
        self._rng = random.Random(config.seed)
        self._tokens = self._capacity()
        self._refilled_at = self._clock()
        self._listing_delete_pending = config.delete_during_listing is not None

    @property
    def latency_s(self) -> float:
        return self.config.latency_ms / 1000

    def before(self, authorization: str | None) -> Fault | None:
        """A fault that pre-empts the request, or None to handle it."""
        config = self.config
        if config.auth_token is not None and authorization != f"Bearer {config.auth_token}":
            return self._count(_UNAUTHORIZED)
        if config.outage:
            return self._count(_OUTAGE)
        wait = self._take_token()
        if wait is not None:
            return self._count(self._too_many(max(1, math.ceil(wait))))
        if self._roll(config.rate_limit_429_rate):
            return self._count(self._too_many(config.retry_after_s))
        if self._roll(config.fail_rate):
            return self._count(_FAILED)
        return None

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

    def _count(self, fault: Fault) -> Fault:
        self.stats[fault.kind] += 1
        return fault

    def _too_many(self, retry_after: int) -> Fault:
        headers = {"Retry-After": str(retry_after)}
        return Fault("rate_limited", 429, "rate_limited", "too many requests", headers)

    def _roll(self, rate: float) -> bool:
        """Draw only when a rate is set, so enabling one fault doesn't shift another's draws."""
        return rate > 0 and self._rng.random() < rate

    def _capacity(self) -> float:
        return max(1.0, self.config.rate_limit or 0.0)

    def _take_token(self) -> float | None:
        """Token bucket: None when a token was taken, else the seconds until one is free."""
        rate = self.config.rate_limit
        if rate is None:
            return None
        now = self._clock()
        self._tokens = min(self._capacity(), self._tokens + (now - self._refilled_at) * rate)
        self._refilled_at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return None
        return (1 - self._tokens) / rate
