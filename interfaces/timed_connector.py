"""Connector latency, measured around every call whatever the adapter.

The run engine and pulls see only the ``Connector`` port, and each adapter
retries on its own; timing a call here, outside the adapter, measures what a
pipeline waits for, retries and backoff included.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import TypeVar

from prometheus_client import Histogram

from application.connector import (
    CollectionDescription,
    Connector,
    ItemOutcome,
    Record,
    RecordPage,
    RecordUpdate,
)
from domain.json_types import JsonObject

T = TypeVar("T")

CONNECTOR_LATENCY = Histogram(
    "publishd_connector_latency_seconds",
    "Latency of calls to the external content service",
    ["connector", "operation"],
    registry=None,
)
"""Process-local: each process reports the calls it made (``/metrics`` registers it)."""


class TimedConnector(Connector):
    """``inner``, with each call observed in ``CONNECTOR_LATENCY`` (failed calls too)."""

    def __init__(self, inner: Connector, connector_type: str) -> None:
        self.inner = inner
        self.connector_type = connector_type
        self.batch_limits = inner.batch_limits
        self.list_page_size = inner.list_page_size
        self.version_field = inner.version_field
        self.creates_idempotently = inner.creates_idempotently
        self.omits_empty_fields = inner.omits_empty_fields

    async def _timed(self, operation: str, call: Awaitable[T]) -> T:
        started = time.perf_counter()
        try:
            return await call
        finally:
            CONNECTOR_LATENCY.labels(self.connector_type, operation).observe(
                time.perf_counter() - started
            )

    async def create(self, folder: str, fields: JsonObject, idempotency_key: str) -> Record:
        return await self._timed("create", self.inner.create(folder, fields, idempotency_key))

    async def update(
        self,
        folder: str,
        record_id: str,
        fields: JsonObject,
        idempotency_key: str,
        *,
        if_match: str | None = None,
    ) -> Record:
        return await self._timed(
            "update",
            self.inner.update(folder, record_id, fields, idempotency_key, if_match=if_match),
        )

    async def create_many(
        self, folder: str, items: Sequence[JsonObject], idempotency_key: str
    ) -> list[ItemOutcome]:
        return await self._timed(
            "create_many", self.inner.create_many(folder, items, idempotency_key)
        )

    async def update_many(
        self, folder: str, items: Sequence[RecordUpdate], idempotency_key: str
    ) -> list[ItemOutcome]:
        return await self._timed(
            "update_many", self.inner.update_many(folder, items, idempotency_key)
        )

    async def read_many(self, folder: str, record_ids: Sequence[str]) -> dict[str, Record]:
        return await self._timed("read_many", self.inner.read_many(folder, record_ids))

    async def find_created(self, folder: str, items: Sequence[JsonObject]) -> list[Record | None]:
        return await self._timed("find_created", self.inner.find_created(folder, items))

    async def describe(self) -> list[CollectionDescription] | None:
        return await self._timed("describe", self.inner.describe())

    async def finish_run(self, changed: Mapping[str, Sequence[str]]) -> None:
        await self._timed("finish_run", self.inner.finish_run(changed))

    async def delete_many(
        self, folder: str, record_ids: Sequence[str], idempotency_key: str
    ) -> None:
        await self._timed(
            "delete_many", self.inner.delete_many(folder, record_ids, idempotency_key)
        )

    async def list_page(self, folder: str, offset: int, limit: int) -> RecordPage:
        return await self._timed("list_page", self.inner.list_page(folder, offset, limit))

    async def read(self, folder: str, record_id: str) -> Record | None:
        return await self._timed("read", self.inner.read(folder, record_id))

    async def aclose(self) -> None:
        await self.inner.aclose()
