"""Client-side rate limiting, for connectors whose service documents a request rate.

Pacing requests before they go out costs a sleep; exceeding the rate costs a
429 and a ``Retry-After`` wait, for every call in flight at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

Sleep = Callable[[float], Awaitable[None]]
MonotonicClock = Callable[[], float]


class TokenBucket:
    """Client-side rate limit: at most ``rate`` requests/s, bursts of ``burst``.

    Each caller reserves the next free slot and sleeps until it (GCRA), so
    there is no lock and waiters are served in arrival order.
    """

    def __init__(self, rate: float, *, burst: int = 1, clock: MonotonicClock, sleep: Sleep) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self._interval = 1.0 / rate
        self._tolerance = (burst - 1) * self._interval
        self._clock = clock
        self._sleep = sleep
        self._next_slot = clock()

    async def acquire(self) -> None:
        now = self._clock()
        slot = max(self._next_slot, now)
        self._next_slot = slot + self._interval
        wait = slot - now - self._tolerance
        if wait > 0:
            await self._sleep(wait)
