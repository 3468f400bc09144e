"""Replay of write responses by ``Idempotency-Key``.

A client that lost an answer retries with the same key; the sandbox must then
answer what it answered the first time instead of applying the write again.
Only applied writes (2xx) are remembered: a refused write changed nothing, so
running it again is harmless and answers from the current state. A bulk write
is one request under one key: its whole answer, every item, is what replays.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: bytes


class IdempotencyCache:
    """Bounded so a long benchmark can't grow the sandbox without limit; oldest keys go first."""

    def __init__(self, capacity: int = 1_000_000) -> None:
        self._capacity = capacity
        self._responses: OrderedDict[tuple[str, str, str], StoredResponse] = OrderedDict()

    def get(self, method: str, path: str, key: str) -> StoredResponse | None:
        return self._responses.get((method, path, key))

    def put(self, method: str, path: str, key: str, response: StoredResponse) -> None:
        self._responses[(method, path, key)] = response
        if len(self._responses) > self._capacity:
            self._responses.popitem(last=False)
