"""An in-memory content service behind the ``Connector`` port, for runs without a sandbox.

It keeps records per folder (so a pull can read back what a run published),
honours idempotency keys like a real service, and checks the crash-safety rule
of the run engine on every call: the intent naming the call's idempotency key
is already in the event store. Tests steer it with ``refuse`` (reject some
records), ``on_call`` (act while a run is in flight, e.g. cancel it) and
``release`` (hold calls in flight).

Like the sandbox, every write gives the record a new ``lastUpdated`` (the
port's ``version_field``; here ``v1``, ``v2``, ... from one counter, so a
version never repeats), and an update with ``if_match`` naming another version
raises ``PreconditionFailed`` and writes nothing. ``seed`` an existing record
again to stage an edit made directly in the service.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from application.app import PublishdApplication
from application.connector import (
    Connector,
    EntryRejected,
    PreconditionFailed,
    Record,
    RecordPage,
)


class CheckingConnector(Connector):
    """Creates, updates and deletes records in memory; each call after its intent is stored."""

    def __init__(self, app: PublishdApplication, pipeline_id: str | None = None) -> None:
        self.app = app
        self.pipeline_id = pipeline_id
        """The pipeline whose intents calls must follow (set it before each run)."""
        self.records: dict[str, dict[str, Record]] = {}
        """folder -> record id -> record, in creation order."""
        self.created_by_key: dict[str, Record] = {}
        self._new_ids = itertools.count(1)
        self._versions = itertools.count(1)
        self.calls: list[str] = []
        """The idempotency key of every call, in the order they went out."""
        self.unannounced: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.release = asyncio.Event()
        """Calls hold until set: lets a test keep calls in flight while a round saves."""
        self.release.set()
        self.refuse: Callable[[str, dict[str, Any]], str | None] = lambda folder, fields: None
        """The message of a rejection for a record's fields, or None to accept them."""
        self.on_call: Callable[[str], None] = lambda idempotency_key: None
        self.finished: list[dict[str, list[str]]] = []
        """What each finished run told the service it changed (``finish_run``)."""

    def _intent_stored(self, idempotency_key: str) -> bool:
        """An intent (``CallDispatched``) with this key is in the pipeline's stored events."""
        if self.pipeline_id is None:
            return False
        return any(
            stored.topic.endswith((".EntryDispatched", ".CallDispatched"))
            and json.loads(stored.state)["idempotency_key"] == idempotency_key
            for stored in self.app.recorder.select_events(uuid.UUID(self.pipeline_id))
        )

    @asynccontextmanager
    async def _call(self, idempotency_key: str) -> AsyncIterator[None]:
        if not self._intent_stored(idempotency_key):
            self.unannounced.append(idempotency_key)
        self.calls.append(idempotency_key)
        self.on_call(idempotency_key)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.release.wait()
            await asyncio.sleep(0)  # yield, as a real call would
            yield
        finally:
            self.in_flight -= 1

    def _check(self, folder: str, fields: dict[str, Any]) -> None:
        message = self.refuse(folder, fields)
        if message is not None:
            raise EntryRejected(message, status=400)

    async def create(self, folder: str, fields: dict[str, Any], idempotency_key: str) -> Record:
        async with self._call(idempotency_key):
            if idempotency_key in self.created_by_key:
                return self.created_by_key[idempotency_key]
            self._check(folder, fields)
            records = self.records.setdefault(folder, {})
            record = self._versioned(f"r-{next(self._new_ids)}", dict(fields))
            records[record.id] = self.created_by_key[idempotency_key] = record
            return record

    async def update(
        self,
        folder: str,
        record_id: str,
        fields: dict[str, Any],
        idempotency_key: str,
        *,
        if_match: str | None = None,
    ) -> Record:
        async with self._call(idempotency_key):
            records = self.records.setdefault(folder, {})
            old = records.get(record_id)
            if old is None:
                raise EntryRejected(f"no record {record_id} in {folder}", status=404)
            current = old.computed["lastUpdated"]
            if if_match is not None and if_match != current:
                message = f"{record_id} in {folder} changed since {if_match}"
                raise PreconditionFailed(message, status=412, details={"lastUpdated": current})
            self._check(folder, fields)
            record = self._versioned(record_id, {**old.field_data, **fields})
            records[record_id] = record
            return record

    async def delete_many(
        self, folder: str, record_ids: Sequence[str], idempotency_key: str
    ) -> None:
        async with self._call(idempotency_key):
            for record_id in record_ids:
                self.records.get(folder, {}).pop(record_id, None)

    async def finish_run(self, changed: Mapping[str, Sequence[str]]) -> None:
        self.finished.append({folder: list(ids) for folder, ids in changed.items()})

    async def list_page(self, folder: str, offset: int, limit: int) -> RecordPage:
        records = list(self.records.get(folder, {}).values())
        return RecordPage(records[offset : offset + limit], len(records))

    async def read(self, folder: str, record_id: str) -> Record | None:
        return self.records.get(folder, {}).get(record_id)

    def seed(self, folder: str, record_id: str, fields: dict[str, Any]) -> None:
        """A record written in the service, not by publishd: before it looked, or meanwhile."""
        self.records.setdefault(folder, {})[record_id] = self._versioned(record_id, fields)

    def _versioned(self, record_id: str, fields: dict[str, Any]) -> Record:
        version = f"v{next(self._versions)}"
        return Record(id=record_id, field_data=fields, computed={"lastUpdated": version})
