"""MainFiles: the current content of main, one row per file.

Main changes only through the workspace's ``MainChanged`` events (pulls and
publishing alike), so this is the whole of main as the application reads it.
"""

from __future__ import annotations

from collections.abc import Sequence

from application.projections.events import ProjectedEvent, folder_and_filename
from application.projections.ports import (
    MainFileRow,
    MainFilesWriter,
    Projection,
    ProjectionContext,
)


class MainFilesProjection(Projection[MainFilesWriter]):
    name = "main_files"
    events = frozenset({"WorkspaceCreated", "MainChanged"})

    def apply(
        self, events: Sequence[ProjectedEvent], ctx: ProjectionContext, writer: MainFilesWriter
    ) -> None:
        pending: dict[tuple[str, str], MainFileRow | None] = {}
        for event in events:
            if event.name == "WorkspaceCreated":
                ctx.note(event)
                continue
            if event.name != "MainChanged":
                continue
            workspace = ctx.workspace_of(event.originator_id)
            if workspace is None:
                continue
            for change in event.data["changes"]:
                path = change["path"]
                content = change.get("content")
                if content is None:
                    pending[(workspace, path)] = None
                else:
                    folder = folder_and_filename(path)[0]
                    pending[(workspace, path)] = MainFileRow(
                        workspace, path, folder, change.get("record_id"), content
                    )
        if pending:
            writer.write(
                [key for key, row in pending.items() if row is None],
                [row for row in pending.values() if row is not None],
            )
