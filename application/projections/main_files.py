"""MainFiles: the current content of main, one row per file.

Main changes only through the workspace's ``MainChanged`` events (pulls and
publishing alike), so this is the whole of main as the application reads it.
"""

from __future__ import annotations

from collections.abc import Sequence

from application.projections.events import Content, FileChange, ProjectedEvent
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
        # (workspace, path) -> (record_id, content), or None to remove; rows are
        # built at the end, for the last change of each file only
        pending: dict[tuple[str, str], tuple[str | None, Content] | None] = {}
        for event in events:
            if event.name == "WorkspaceCreated":
                ctx.note(event)
                continue
            if event.name != "MainChanged":
                continue
            workspace = ctx.workspace_of(event.originator_id)
            if workspace is None:
                continue
            change: FileChange
            for change in event.data["changes"]:
                content = change.content
                pending[(workspace, change.path)] = (
                    None if content is None else (change.record_id, content)
                )
        if pending:
            writer.write(
                [key for key, file in pending.items() if file is None],
                [
                    MainFileRow(ws, path, path.rpartition("/")[0], *file)
                    for (ws, path), file in pending.items()
                    if file is not None
                ],
            )
