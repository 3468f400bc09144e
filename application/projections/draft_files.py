"""DraftFiles: each user's pending changes, one row per path (content null = deleted)."""

from __future__ import annotations

from collections.abc import Sequence

from application.projections.events import ProjectedEvent
from application.projections.ports import (
    DraftFileRow,
    DraftFilesWriter,
    Projection,
    ProjectionContext,
)

DRAFT_EVENTS = frozenset(
    {
        "DraftStarted",
        "DraftFileWritten",
        "DraftFileDeleted",
        "DraftFileReverted",
        "DraftDiscarded",
        "DraftRebased",
    }
)
"""Every event of the Draft aggregate: what a projection of draft content reads."""


class DraftFilesProjection(Projection[DraftFilesWriter]):
    name = "draft_files"
    events = DRAFT_EVENTS

    def apply(
        self, events: Sequence[ProjectedEvent], ctx: ProjectionContext, writer: DraftFilesWriter
    ) -> None:
        discarded: list[tuple[str, str]] = []
        # key -> row, or None to remove the key; later events of a key win
        pending: dict[tuple[str, str, str], DraftFileRow | None] = {}
        for event in events:
            if event.name == "DraftStarted":
                ctx.note(event)
                continue
            draft = ctx.draft_of(event.originator_id)
            if draft is None:
                continue
            ws, user = draft
            data = event.data
            if event.name == "DraftFileWritten":
                path = data["path"]
                pending[(ws, user, path)] = DraftFileRow(ws, user, path, data["content"])
            elif event.name == "DraftFileDeleted":
                pending[(ws, user, data["path"])] = DraftFileRow(ws, user, data["path"], None)
            elif event.name == "DraftFileReverted":
                pending[(ws, user, data["path"])] = None
            elif event.name == "DraftRebased":
                for path in data["paths"]:
                    pending[(ws, user, path)] = None
            elif event.name == "DraftDiscarded":
                # Earlier pending changes of this draft are dropped with it; the
                # discard is applied before the changes that come after it.
                for key in [k for k in pending if k[0] == ws and k[1] == user]:
                    del pending[key]
                discarded.append((ws, user))
        if pending or discarded:
            writer.write(
                discarded,
                [key for key, row in pending.items() if row is None],
                [row for row in pending.values() if row is not None],
            )
