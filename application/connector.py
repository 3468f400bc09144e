"""The Connector port: the external content service, as the run engine sees it.

Adapters (the sandbox client, later Webflow/Airtable) subclass ``Connector``;
unit tests use an in-memory fake of the same interface. Adapters do their own
retrying of transient failures (backoff + jitter, ``Retry-After``) and rate
limiting, and then classify what is left into the three errors below.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

from domain.json_types import JsonObject, JsonValue


class ConnectorError(Exception):
    code = "rejected"
    """The entry error code an outcome with this error records (API.md, Errors)."""

    def __init__(
        self, message: str, *, status: int | None = None, details: JsonValue = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.details = details


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
class RecordPage:
    records: list[Record]
    total: int


class Connector(ABC):
    """Create, update (conditional where the service can), bulk delete (paged), list, read one."""

    delete_page_size: int = 100
    list_page_size: int = 100
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

    @abstractmethod
    async def delete_many(
        self, folder: str, record_ids: Sequence[str], idempotency_key: str
    ) -> None:
        """Delete at most ``delete_page_size`` records, all or none."""

    @abstractmethod
    async def list_page(self, folder: str, offset: int, limit: int) -> RecordPage:
        """One page of a folder's records, in a stable order."""

    @abstractmethod
    async def read(self, folder: str, record_id: str) -> Record | None:
        """One record as the service holds it now; None when the service has no such record."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
