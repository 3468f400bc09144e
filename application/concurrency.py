"""Many threads on one event store: conflicts retried within a budget, a cache safe to share.

Commands run in the server's thread pool, so two requests on one aggregate
meet in optimistic concurrency (``IntegrityError`` on the version they both
wrote) and in eventsourcing's aggregate cache, which fast-forwards the cached
object in place under a lock but deep-copies it outside that lock.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import Repository
from eventsourcing.persistence import IntegrityError

from domain.errors import WriteConflict

R = TypeVar("R")


@dataclass(frozen=True)
class ConflictBudget:
    """How long a command keeps retrying a lost race before answering ``conflict``.

    Immediate retries of a hot aggregate collide again in lockstep; growing,
    jittered pauses spread the writers out so each gets its turn, and both
    bounds keep a request from waiting without end behind a writer storm.
    """

    attempts: int = 30
    seconds: float = 5.0
    first_delay: float = 0.002
    max_delay: float = 0.1

    def run(
        self,
        command: Callable[[], R],
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> R:
        deadline = clock() + self.seconds
        delay = self.first_delay
        for attempt in range(1, self.attempts + 1):
            try:
                return command()
            except IntegrityError:
                pause = random.uniform(0, delay)
                if attempt == self.attempts or clock() + pause > deadline:
                    break
                sleep(pause)
                delay = min(delay * 2, self.max_delay)
        raise WriteConflict(
            f"other writers kept changing the same data; gave up after {attempt} attempts, "
            "try again"
        )


class SharedCacheRepository(Repository[UUID]):
    """A repository whose cached aggregates are read and advanced by one thread at a time.

    eventsourcing fast-forwards a cached aggregate under a per-aggregate lock
    but copies it after releasing that lock, so a copy can run while another
    thread applies new events to the same object ("dictionary changed size
    during iteration"). Holding a striped lock over the whole cached read
    makes fast-forward and copy one step; distinct aggregates rarely share a
    stripe, so unrelated commands still run side by side.
    """

    STRIPES = 64

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stripes = [threading.Lock() for _ in range(self.STRIPES)]

    def get(self, aggregate_id: UUID, *, version: int | None = None, **kwargs: Any) -> Any:
        if self.cache is None or version is not None:
            return super().get(aggregate_id, version=version, **kwargs)
        with self._stripes[hash(aggregate_id) % self.STRIPES]:
            return super().get(aggregate_id, version=version, **kwargs)

    def put_in_cache(self, aggregate_id: UUID, aggregate: Any) -> None:
        """Start the cache from a copy the caller just saved (taken under the same lock)."""
        if self.cache is None:
            return
        with self._stripes[hash(aggregate_id) % self.STRIPES]:
            self.cache.put(aggregate_id, aggregate)
