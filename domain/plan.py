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
from enum import StrEnum
from typing import TypeAlias

from domain.json_types import JsonObject


class Phase(StrEnum):
    """The phases of a plan, in the order they run (DESIGN §3)."""

    EDIT = "edit"
    CREATE = "create"
    DELETE = "delete"
    BACKFILL = "backfill"


PHASES: tuple[Phase, ...] = tuple(Phase)


class UpstreamPolicy(StrEnum):
    """What a run does when the service's copy of a record changed since main's copy (API.md §4)."""

    FAIL = "fail"
    """The entry fails with ``changed_upstream``; the user's change stays in the draft."""
    OVERWRITE = "overwrite"
    """The entry writes its fields whatever the service holds."""


DELETE_PAGE_SIZE = 100
"""Deletes per planned page (one bulk-delete call each): the services' common bulk limit."""

EntryKey: TypeAlias = str
"""``phase:path``: names one entry of a plan; dependencies and events use it."""


def entry_key(phase: str, path: str) -> EntryKey:
    return f"{phase}:{path}"


@dataclass(frozen=True)
class PlanEntry:
    path: str
    phase: Phase
    operation: JsonObject
    deferred_fields: tuple[str, ...] = ()
    depends_on: tuple[EntryKey, ...] = ()
    """Entry keys that must be published before this entry is sent."""
    before: JsonObject = field(default_factory=dict)
    """Main's value of each field the entry writes, for updates of records main has."""

    @property
    def key(self) -> EntryKey:
        return entry_key(self.phase, self.path)


@dataclass(frozen=True)
class Plan:
    entries: tuple[PlanEntry, ...] = field(default_factory=tuple)

    def phases(self) -> list[JsonObject]:
        """Non-empty phases in execution order with their entry counts (``PipelinePlanned``'s)."""
        counts = dict.fromkeys(PHASES, 0)
        for entry in self.entries:
            counts[entry.phase] += 1
        return [{"phase": p, "entries": n} for p, n in counts.items() if n]
