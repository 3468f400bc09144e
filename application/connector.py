"""The Connector port: the external content service, as the run engine sees it.

Adapters (the sandbox client, later Webflow/Airtable) subclass ``Connector``;
unit tests use an in-memory fake of the same interface. Adapters do their own
retrying of transient failures (backoff + jitter, ``Retry-After``) and rate
limiting, and then classify what is left into the errors below.

Writes go out in batches where the service takes them (``batch_limits``):
``create_many`` / ``update_many`` answer each item's own outcome. A service
that refuses a whole request because of one item says which (the error's
``index``); the run engine then fails that item alone and sends the rest
again (``application.calls``).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field

from domain.calls import BatchLimits
from domain.json_types import JsonObject, JsonValue


class ConnectorError(Exception):
    code = "rejected"
    """The entry error code an outcome with this error records (API.md, Errors)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        details: JsonValue = None,
        index: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.details = details
        self.index = index
        """For a batch request refused whole: the item it refused it for (None: not one item)."""

    def for_item(self) -> ConnectorError:
        """The same error as one item's outcome (no longer about a position in a request)."""
        return type(self)(self.message, status=self.status, details=self.details)


class EntryRejected(ConnectorError):
    """The service refused this one record (a 4xx, a validation error). The phase goes on."""


class TransientFailure(ConnectorError):
    """Timeouts, 5xx, 429 that outlived the retry budget. The entry fails; the phase goes on."""

    code = "unavailable"


class PreconditionFailed(ConnectorError):
    """A conditional write found the record changed since the version it named (HTTP 412).

    Nothing was written; the caller reads the record and decides.
    """


class FatalConnectorError(ConnectorError):
    """Auth rejected, service unreachable past the budget: the run stops (resumable)."""

    code = "fatal"


@dataclass(frozen=True)
class Record:
    """One record as the service returns it (canonical, with server-computed fields)."""

    id: str
    field_data: JsonObject
    computed: JsonObject = field(default_factory=dict)
    """Server-computed fields: createdOn, lastUpdated, cdnUrl, ..."""


@dataclass(frozen=True)
class RecordUpdate:
    """One item of ``update_many``: the fields to patch, conditionally on ``if_match``."""

    record_id: str
    fields: JsonObject
    if_match: str | None = None


ItemOutcome = Record | ConnectorError
"""One item of a batch: the record as the service now holds it, or why not."""


@dataclass(frozen=True)
class FieldDescription:
    name: str
    """As records key it: Webflow's field slug, Airtable's field name."""
    type: str
    target: str | None = None
    """A reference (linked-record) field: the id of the collection (table) it points into."""


@dataclass(frozen=True)
class CollectionDescription:
    """A folder's collection (table) as the service describes it (``connectors check``)."""

    folder: str
    mapped_to: str
    """The collection id (or table id or name) the config maps the folder to."""
    service_id: str | None
    """The service's id for it; None: the service has no such collection."""
    name: str | None
    fields: tuple[FieldDescription, ...] = ()


@dataclass(frozen=True)
class RecordPage:
    records: list[Record]
    total: int


class Connector(ABC):
    """Create, update (conditional where the service can), bulk delete (paged), list, read one."""

    batch_limits: BatchLimits = BatchLimits()
    """The most items per create / update / delete request (one record per write by default)."""
    list_page_size: int = 100
    creates_idempotently: bool = True
    """The service honours idempotency keys (or makes creates idempotent itself). False:
    a create call re-sent after a crash first asks ``find_created`` what it made."""
    omits_empty_fields: bool = False
    """The service leaves empty values (``""``, ``[]``, ``false``) out of the records it
    returns: a pull takes such a field as empty, not as a change."""
    version_field: str | None = "lastUpdated"
    """The server-computed field that versions a record, sent as ``if_match`` on a
    conditional update; None where the service has no conditional writes (the run
    then reads the record before overwriting it)."""

    @abstractmethod
    async def create(self, folder: str, fields: JsonObject, idempotency_key: str) -> Record:
        """Create a record. The same key twice creates one record and returns it both times."""

    @abstractmethod
    async def update(
        self,
        folder: str,
        record_id: str,
        fields: JsonObject,
        idempotency_key: str,
        *,
        if_match: str | None = None,
    ) -> Record:
        """Patch the given fields of a record; returns the canonical record.

        With ``if_match`` (the record's ``version_field`` value as main holds it)
        the write happens only if the record is still at that version, else
        ``PreconditionFailed``.
        """

    async def create_many(
        self, folder: str, items: Sequence[JsonObject], idempotency_key: str
    ) -> list[ItemOutcome]:
        """Create at most ``batch_limits.create`` records in one request; outcomes in order.

        A request refused whole raises (with ``index`` when one item caused
        it); ``FatalConnectorError`` always raises. This default sends one
        request per item, for services without bulk writes.
        """
        if len(items) == 1:
            return [await self.create(folder, items[0], idempotency_key)]
        return [
            await _outcome(self.create(folder, fields, f"{idempotency_key}:{i}"))
            for i, fields in enumerate(items)
        ]

    async def update_many(
        self, folder: str, items: Sequence[RecordUpdate], idempotency_key: str
    ) -> list[ItemOutcome]:
        """Patch at most ``batch_limits.update`` records in one request; as ``create_many``."""

        def one(item: RecordUpdate, key: str) -> Awaitable[Record]:
            return self.update(folder, item.record_id, item.fields, key, if_match=item.if_match)

        if len(items) == 1:
            return [await one(items[0], idempotency_key)]
        return [await _outcome(one(item, f"{idempotency_key}:{i}")) for i, item in enumerate(items)]

    async def read_many(self, folder: str, record_ids: Sequence[str]) -> dict[str, Record]:
        """The records of ``record_ids`` the service still has, by id (one read each by
        default; a service that lists cheaper than it reads says so here)."""
        found = await asyncio.gather(*(self.read(folder, rid) for rid in record_ids))
        return {rid: record for rid, record in zip(record_ids, found, strict=True) if record}

    async def find_created(self, folder: str, items: Sequence[JsonObject]) -> list[Record | None]:
        """The record each item of an earlier, unanswered create already made, or None.

        Asked only for a create call that may have gone out before (its intent
        was recorded by a run that died), and only where ``creates_idempotently``
        is False: the service itself would create it twice.
        """
        return [None] * len(items)

    async def describe(self) -> list[CollectionDescription] | None:
        """Each mapped folder's collection and its fields; None: the service keeps no field list."""
        return None

    async def finish_run(self, changed: Mapping[str, Sequence[str]]) -> None:  # noqa: B027
        """After a pipeline's last phase: folder -> ids of the records it created or updated.

        A service with staged writes publishes them here. Called again when a
        resumed run finishes, so it must be safe to repeat.
        """

    @abstractmethod
    async def delete_many(
        self, folder: str, record_ids: Sequence[str], idempotency_key: str
    ) -> None:
        """Delete at most ``batch_limits.delete`` records, all or none."""

    @abstractmethod
    async def list_page(self, folder: str, offset: int, limit: int) -> RecordPage:
        """One page of a folder's records, in a stable order."""

    @abstractmethod
    async def read(self, folder: str, record_id: str) -> Record | None:
        """One record as the service holds it now; None when the service has no such record."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


async def _outcome(call: Awaitable[Record]) -> ItemOutcome:
    """One item's outcome of a request per item: a fatal error still stops everything."""
    try:
        return await call
    except FatalConnectorError:
        raise
    except ConnectorError as exc:
        return exc
