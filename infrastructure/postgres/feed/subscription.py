"""Live subscriptions: bounded in-process queues fed by the feed's one reader.

The queue is bounded so that one client that stops reading costs a fixed amount
of memory and never slows the reader or anyone else: when it overflows the
subscription ends (its queue is dropped) and the client resumes later from the
last id it saw, through the replay path, which loses nothing.

Subscribers are kept by what they follow (a pipeline, a workspace, or
everything), so offering an event costs three lookups, whatever the number of
subscribers.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Hashable
from types import TracebackType

from infrastructure.postgres.feed.wire import FeedEvent

OVERFLOW = "overflow"
SHUTDOWN = "shutdown"
CLOSED = "closed"


class Subscription:
    def __init__(self, key: Hashable, maxsize: int, forget: Callable[[Subscription], None]) -> None:
        self.key = key
        self._maxsize = maxsize
        self._forget = forget
        self._events: deque[FeedEvent] = deque()
        self._ready = asyncio.Event()
        self.ended: str | None = None
        """Why the subscription ended: ``overflow``, ``shutdown`` or ``closed``."""

    def offer(self, event: FeedEvent) -> None:
        """Called by the feed, on the event loop, never blocking."""
        if self.ended is not None:
            return
        if len(self._events) >= self._maxsize:
            self._events.clear()
            self.end(OVERFLOW)
            return
        self._events.append(event)
        self._ready.set()

    def end(self, reason: str) -> None:
        if self.ended is None:
            self.ended = reason
            self._forget(self)
            self._ready.set()

    def close(self) -> None:
        self.end(CLOSED)

    async def next_batch(self, limit: int = 1000) -> list[FeedEvent]:
        """Wait for events and take up to ``limit``; ``[]`` once the subscription ended."""
        while not self._events:
            if self.ended is not None:
                return []
            self._ready.clear()
            await self._ready.wait()
        take = min(limit, len(self._events))
        return [self._events.popleft() for _ in range(take)]

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Subscribers:
    """Every live subscription of a feed, by the key of what it follows."""

    def __init__(self, queue_size: int) -> None:
        self._queue_size = queue_size
        self._by_key: dict[Hashable, set[Subscription]] = {}
        self._closing = False
        self.dropped = 0
        """Subscriptions ended because their queue overflowed."""

    def __len__(self) -> int:
        return sum(len(s) for s in self._by_key.values())

    def subscribe(self, key: Hashable) -> Subscription:
        subscription = Subscription(key, self._queue_size, self._forget)
        if self._closing:
            subscription.end(SHUTDOWN)
        else:
            self._by_key.setdefault(key, set()).add(subscription)
        return subscription

    def end_all(self) -> None:
        """End every subscription now and refuse new ones."""
        self._closing = True
        for subscribers in list(self._by_key.values()):
            for subscription in list(subscribers):
                subscription.end(SHUTDOWN)

    def offer(self, event: FeedEvent) -> None:
        keys: list[Hashable] = [("originator", event.originator_id), ("all", None)]
        if event.workspace is not None:
            keys.append(("workspace", event.workspace))
        for key in keys:
            subscribers = self._by_key.get(key)
            if subscribers:
                for subscription in list(subscribers):
                    subscription.offer(event)

    def _forget(self, subscription: Subscription) -> None:
        if subscription.ended == OVERFLOW:
            self.dropped += 1
        subscribers = self._by_key.get(subscription.key)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._by_key[subscription.key]
