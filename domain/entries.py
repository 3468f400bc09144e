"""One entry of a pipeline: what the plan said to do to one path in one phase, and how it went."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from domain.json_types import JsonObject, JsonValue
from domain.plan import EntryKey, Phase, entry_key


class EntryStatus(StrEnum):
    PLANNED = "planned"
    DISPATCHED = "dispatched"
    """The intent to send it is recorded; its outcome is not (yet)."""
    PUBLISHED = "published"
    FAILED = "failed"
    SKIPPED = "skipped"


OPEN_STATUSES = frozenset({EntryStatus.PLANNED, EntryStatus.DISPATCHED})
"""Statuses of entries that still need a call (or a reconcile of the one sent)."""


@dataclass(slots=True)
class PipelineEntry:
    path: str
    phase: Phase
    operation: JsonObject
    """The planned operation (domain.plan); it never changes after ``EntryPlanned``."""
    deferred_fields: list[str]
    depends_on: list[EntryKey]
    before: JsonObject
    """Main's value of each field the entry writes, as planned (empty for new records)."""
    status: EntryStatus = EntryStatus.PLANNED
    record_id: str | None = None
    error: str | None = None
    error_code: str | None = None
    """The kind of failure (API.md: ``rejected``, ``changed_upstream``, ``skipped_dependency``)."""
    error_details: JsonValue = None
    idempotency_key: str | None = None

    @property
    def key(self) -> EntryKey:
        return entry_key(self.phase, self.path)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def copy(self) -> PipelineEntry:
        """A copy whose status fields change independently; the operation is shared."""
        return PipelineEntry(
            self.path,
            self.phase,
            self.operation,
            self.deferred_fields,
            self.depends_on,
            self.before,
            self.status,
            self.record_id,
            self.error,
            self.error_code,
            self.error_details,
            self.idempotency_key,
        )

    def diff(self) -> list[JsonObject]:
        """Each field the entry writes: main's value before, the value sent (API.md §4)."""
        fields: JsonObject = self.operation.get("fields", {})
        return [
            {"field": name, "before": self.before.get(name), "after": value}
            for name, value in fields.items()
        ]

    def planned(self) -> JsonObject:
        """The entry as the plan states it (API.md's plan response)."""
        return {
            "path": self.path,
            "phase": self.phase,
            "operation": self.operation,
            "deferred_fields": self.deferred_fields,
            "depends_on": self.depends_on,
            "diff": self.diff(),
        }
