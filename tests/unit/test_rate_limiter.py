"""The shared client-side rate limiter, on a clock the test moves."""

from __future__ import annotations

import asyncio

import pytest

from infrastructure.connectors.rate_limit import ARRIVAL_MARGIN, RateLimiter, RateLimiters


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sent: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def limiter(clock: Clock, requests: float, window: float) -> RateLimiter:
    return RateLimiter(requests, window, clock=clock, sleep=clock.sleep)


def send(clock: Clock, limit: RateLimiter, count: int) -> list[float]:
    async def go() -> list[float]:
        times = []
        for _ in range(count):
            async with limit.request():
                times.append(clock.now)
        return times

    return asyncio.run(go())


def test_never_more_than_the_limit_in_any_window() -> None:
    clock = Clock()
    times = send(clock, limiter(clock, 60, 60.0), 150)
    window = 60.0 * (1 + ARRIVAL_MARGIN)
    assert times[:60] == [0.0] * 60  # a quota per minute is spent at once
    assert times[60] == pytest.approx(window)
    for i in range(len(times) - 60):
        assert times[i + 60] - times[i] >= window - 1e-9


def test_a_fractional_rate_is_one_request_per_longer_window() -> None:
    clock = Clock()
    times = send(clock, limiter(clock, 0.5, 1.0), 3)
    assert times == pytest.approx([0.0, 2.1, 4.2])


def test_a_retry_after_pauses_every_caller() -> None:
    clock = Clock()
    limit = limiter(clock, 5, 1.0)
    send(clock, limit, 1)
    limit.pause(30.0)
    assert send(clock, limit, 1) == [30.0]


def test_a_lower_remaining_quota_counts_other_clients_requests() -> None:
    clock = Clock()
    limit = limiter(clock, 10, 1.0)
    send(clock, limit, 2)
    limit.observe_remaining(0)  # someone else spent the other eight
    assert send(clock, limit, 1) == [pytest.approx(1.0 + ARRIVAL_MARGIN)]


def test_a_request_waits_a_window_after_the_answer_of_the_one_a_limit_before_it() -> None:
    """The service counts arrivals: a slow answer moves the next window along with it."""
    clock = Clock()
    limit = limiter(clock, 2, 1.0)

    async def go() -> list[float]:
        first = await limit.acquire()
        second = await limit.acquire()
        clock.now = 0.4  # the first request's answer takes 0.4 s
        limit.answered(first)
        limit.answered(second)
        third = await limit.acquire()
        limit.answered(third)
        return [clock.now]

    assert asyncio.run(go()) == [pytest.approx(0.4 + 1.0 + ARRIVAL_MARGIN)]


def test_limiters_are_shared_per_credentials_and_rate() -> None:
    limiters = RateLimiters()
    one = limiters.for_credentials("https://api.example/v2\nsecret", 60, 60.0)
    assert limiters.for_credentials("https://api.example/v2\nsecret", 60, 60.0) is one
    assert limiters.for_credentials("https://api.example/v2\nother", 60, 60.0) is not one
    assert limiters.for_credentials("https://api.example/v2\nsecret", 120, 60.0) is not one
