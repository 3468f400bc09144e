"""Client-side rate limiting, for connectors whose service documents a request rate.

Pacing requests before they go out costs a sleep; exceeding the rate costs a
429 and a ``Retry-After`` wait (30 s of refusals on Airtable), for every call
in flight at once. So a connector paces itself to the service's documented
rate (proactive), and learns from the service's answers (adaptive): a 429's
``Retry-After`` pauses every caller, and a remaining-quota header lower than
the limiter's own count means someone else spends the same quota.

Services state their limits per window ("60 requests per minute", "5 per
second"), so the limiter keeps at most ``requests`` sends in any trailing
``window`` (a sliding log), plus a small margin for the time a request takes
to arrive: a steady run meets no 429. One limiter serves every pipeline and
pull of a process that use the same credentials (``RateLimiters``), because
the quota belongs to the credentials, not to one run.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable

Sleep = Callable[[float], Awaitable[None]]
MonotonicClock = Callable[[], float]

ARRIVAL_MARGIN = 0.05
"""Share of the window added to it: a request sent on time may arrive a little late."""


class RateLimiter:
    """At most ``requests`` sends per trailing ``window`` seconds, shared by every caller.

    Each caller reserves the next free slot under a lock and sleeps until it,
    so callers are served in arrival order and the lock is never held across
    an ``await``; it works from any thread's event loop.
    """

    def __init__(
        self,
        requests: float,
        window: float,
        *,
        clock: MonotonicClock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if requests < 1 and window < 1 / requests:
            requests, window = 1, window / requests  # "0.5/s" is one request per 2 s
        if requests < 1 or window <= 0:
            raise ValueError("a rate needs at least one request per positive window")
        self.requests = int(requests)
        self.window = window * (1 + ARRIVAL_MARGIN)
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()
        """Reserved send times, ascending; only the last ``requests`` matter."""
        self._paused_until = 0.0
        self._lock = threading.Lock()
        self.waited = 0.0
        """Seconds callers spent waiting for a slot (for benchmarks and metrics)."""

    def _reserve(self) -> tuple[float, float]:
        with self._lock:
            now = self._clock()
            slot = max(now, self._paused_until)
            if self._sent:
                slot = max(slot, self._sent[-1])
            if len(self._sent) >= self.requests:
                slot = max(slot, self._sent[-self.requests] + self.window)
            self._sent.append(slot)
            while len(self._sent) > self.requests:
                self._sent.popleft()
            return slot, now

    async def acquire(self) -> None:
        """Wait until a request may go out (and count it as sent then)."""
        while True:
            slot, now = self._reserve()
            if slot > now:
                self.waited += slot - now
                await self._sleep(slot - now)
            with self._lock:
                if self._paused_until <= self._clock() + 1e-9:
                    return
            # A 429 arrived while this caller slept: its slot was in the refused time.

    def pause(self, seconds: float) -> None:
        """The service refused for ``seconds`` (``Retry-After``): nobody sends until then."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))

    def observe_remaining(self, remaining: int) -> None:
        """The service says ``remaining`` requests are left in its window.

        Fewer than the limiter's own count means other clients spend the same
        quota: their requests are counted here as sent now.
        """
        with self._lock:
            now = self._clock()
            recent = sum(1 for t in self._sent if t > now - self.window)
            others = self.requests - recent - max(0, remaining)
            for _ in range(min(others, self.requests)):
                self._sent.append(max(now, self._sent[-1] if self._sent else now))
            while len(self._sent) > self.requests:
                self._sent.popleft()


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
