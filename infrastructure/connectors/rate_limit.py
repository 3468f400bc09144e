"""Client-side rate limiting, for connectors whose service documents a request rate.

Pacing requests before they go out costs a sleep; exceeding the rate costs a
429 and a ``Retry-After`` wait (30 s of refusals on Airtable), for every call
in flight at once. So a connector paces itself to the service's documented
rate (proactive), and learns from the service's answers (adaptive): a 429's
``Retry-After`` pauses every caller, and a remaining-quota header lower than
the limiter's own count means someone else spends the same quota.

Services state their limits per window ("60 requests per minute", "5 per
second") and count a request when it arrives, which is some time after it was
sent and before its answer came back. So the limiter keeps a sliding log of
the last ``requests`` requests, each stamped with the moment its answer came
back (its send time while it is in flight), and a request goes out only once
the one ``requests`` places before it was answered a whole window ago (plus
a 5% margin): the service can then never count more than ``requests`` in a
window, however late a request arrives, and a steady run meets no 429. One
limiter serves every pipeline and pull of a process that use the same
credentials (``RateLimiters``), because the quota belongs to the credentials,
not to one run.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

Sleep = Callable[[float], Awaitable[None]]
MonotonicClock = Callable[[], float]

ARRIVAL_MARGIN = 0.05
"""Share of the window added to it: a request sent on time may arrive a little late."""


class _Slot:
    """One request in the log: when it may go (then went), and when its answer came back."""

    __slots__ = ("answered", "at", "before")

    def __init__(self, at: float, before: _Slot | None) -> None:
        self.at = at
        self.before = before
        """The request ``requests`` places earlier: this one waits a window after its answer."""
        self.answered = False


class RateLimiter:
    """At most ``requests`` requests per trailing ``window`` seconds, shared by every caller.

    ``async with limiter.request():`` around each request. Callers reserve
    slots in arrival order under a lock that is never held across an
    ``await``, so it works from any thread's event loop.
    """

    def __init__(
        self,
        requests: float,
        window: float,
        *,
        clock: MonotonicClock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        poll: float = 0.005,
    ) -> None:
        if requests < 1 and window < 1 / requests:
            requests, window = 1, window / requests  # "0.5/s" is one request per 2 s
        if requests < 1 or window <= 0:
            raise ValueError("a rate needs at least one request per positive window")
        self.requests = int(requests)
        self.window = window * (1 + ARRIVAL_MARGIN)
        self._clock = clock
        self._sleep = sleep
        self._poll = poll
        self._log: deque[_Slot] = deque()
        """The last ``requests`` slots, in the order they were reserved."""
        self._paused_until = 0.0
        self._lock = threading.Lock()
        self.waited = 0.0
        """Seconds callers spent waiting for a slot (for benchmarks and metrics)."""

    def _reserve(self) -> _Slot:
        with self._lock:
            now = self._clock()
            at = max(now, self._paused_until)
            if self._log:
                at = max(at, self._log[-1].at)
            before = self._log[0] if len(self._log) >= self.requests else None
            if before is not None:
                at = max(at, before.at + self.window)
            slot = _Slot(at, before)
            self._log.append(slot)
            while len(self._log) > self.requests:
                self._log.popleft()
            return slot

    def _wait(self, slot: _Slot) -> float:
        """Seconds ``slot`` must still wait (0: it may go now, and is stamped so)."""
        with self._lock:
            now = self._clock()
            ready = max(slot.at, self._paused_until)
            before = slot.before
            if before is not None:
                if not before.answered:
                    return self._poll  # its arrival is not known yet: wait for its answer
                ready = max(ready, before.at + self.window)
            if ready <= now + 1e-9:
                slot.at = now
                return 0.0
            return ready - now

    async def acquire(self) -> _Slot:
        """Wait until a request may go out; ``answered(slot)`` once its answer is in."""
        slot = self._reserve()
        while (wait := self._wait(slot)) > 0:
            self.waited += wait
            await self._sleep(wait)
        return slot

    def answered(self, slot: _Slot) -> None:
        with self._lock:
            slot.at = max(slot.at, self._clock())
            slot.answered = True

    @asynccontextmanager
    async def request(self) -> AsyncIterator[None]:
        """The span of one request: from its slot until its answer (or failure) is in."""
        slot = await self.acquire()
        try:
            yield
        finally:
            self.answered(slot)

    def pause(self, seconds: float) -> None:
        """The service refused for ``seconds`` (``Retry-After``): nobody sends until then."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))

    def observe_remaining(self, remaining: int) -> None:
        """The service says ``remaining`` requests are left in its window.

        Fewer than the limiter's own count means other clients spend the same
        quota: their requests are logged here as answered now.
        """
        with self._lock:
            now = self._clock()
            recent = sum(1 for s in self._log if s.at > now - self.window)
            others = min(self.requests - recent - max(0, remaining), self.requests)
            for _ in range(others):
                before = self._log[0] if len(self._log) >= self.requests else None
                slot = _Slot(now, before)
                slot.answered = True
                self._log.append(slot)
                while len(self._log) > self.requests:
                    self._log.popleft()


class RateLimiters:
    """One limiter per credentials in a process: every run and pull with them shares it."""

    def __init__(self) -> None:
        self._limiters: dict[str, RateLimiter] = {}
        self._lock = threading.Lock()

    def for_credentials(self, identity: str, requests: float, window: float) -> RateLimiter:
        """The limiter of ``identity`` (a base URL plus a secret) at this rate, made at first use.

        The identity is hashed before it is kept: a limiter table must not be
        a second place where tokens live.
        """
        key = hashlib.sha256(f"{identity}\n{requests}/{window}".encode()).hexdigest()
        with self._lock:
            limiter = self._limiters.get(key)
            if limiter is None:
                limiter = self._limiters[key] = RateLimiter(requests, window)
            return limiter
