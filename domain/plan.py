"""The plan: what the planner produces and a pipeline records.

Operations are plain JSON so they can travel in events unchanged:

- edit:     ``{"type": "update", "folder", "record_id", "fields"}``
- create:   ``{"type": "create", "folder", "fields"}``
- delete:   ``{"type": "delete", "folder", "record_id", "page"}``
- backfill: ``{"type": "update", "folder", "record_id" (None: the record this
  pipeline creates for the same path), "fields"}``

``fields`` may hold @-reference strings; they are resolved to record ids at the
moment of sending, never at planning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from domain.json_types import JsonObject

PHASES: tuple[str, ...] = ("edit", "create", "delete", "backfill")


def entry_key(phase: str, path: str) -> str:
    return f"{phase}:{path}"


@dataclass(frozen=True)
class PlanEntry:
    path: str
    phase: str
    operation: JsonObject
    deferred_fields: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    """Entry keys (``phase:path``) that must be published before this entry is sent."""

    @property
    def key(self) -> str:
        return entry_key(self.phase, self.path)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "phase": self.phase,
            "operation": self.operation,
            "deferred_fields": list(self.deferred_fields),
            "depends_on": list(self.depends_on),
        }


@dataclass(frozen=True)
class Plan:
    entries: tuple[PlanEntry, ...] = field(default_factory=tuple)

    def phases(self) -> list[dict[str, Any]]:
        """Non-empty phases in execution order with their entry counts."""
        counts = {phase: 0 for phase in PHASES}
        for entry in self.entries:
            counts[entry.phase] += 1
        return [{"phase": p, "entries": n} for p, n in counts.items() if n]
