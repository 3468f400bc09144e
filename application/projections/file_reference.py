"""FileReference: who points at what, on main and in every draft.

Main's pointers come from main content read with the folder's schema as it
stood when the content was recorded (schemas come from ``SchemaRegistered``,
kept by this projection in its own table); a draft's pointers come from the
draft's content. A file's pointers are replaced as a whole whenever the file
changes, and a removed or deleted file points at nothing.

The projection writes each pointer as the file wrote it (a target filename for
an @-reference, a target record id for a resolved id); the adapter fills the
other column from FileIndex, so both are filled whenever FileIndex knows them.
"""

from __future__ import annotations

from collections.abc import Sequence

from application.projections.draft_files import DRAFT_EVENTS
from application.projections.events import (
    Content,
    FileChange,
    ProjectedEvent,
    parse_content,
)
from application.projections.ports import (
    FileReferenceWriter,
    Projection,
    ProjectionContext,
    ReferenceRow,
    SourceKey,
)
from domain.json_types import JsonObject
from domain.pointers import iter_resolved_refs, ref_strings_by_field, target_of
from domain.schema import FolderSchema

MAIN = "main"


def draft_branch(user: str) -> str:
    return f"draft:{user}"


def references_of(
    workspace: str,
    branch: str,
    path: str,
    content: Content,
    schema: FolderSchema | None,
    may_refer: bool = True,
) -> list[ReferenceRow]:
    """One row per distinct target of the file (the same target in two fields is one row).

    The same pointers as ``iter_at_refs`` and ``iter_resolved_refs`` find, without
    the dotted field paths they build for each one: a rebuild reads every file
    ever written, and a row keeps only the target. ``may_refer=False`` (the
    event's JSON has no ``@``) skips the walk for @-references.
    """
    if not may_refer and (schema is None or not schema.fields):
        return []  # (nothing to look for: the content is not even parsed)
    rows: dict[tuple[str, str | None, str | None], ReferenceRow] = {}
    parsed = parse_content(content)
    for raws in ref_strings_by_field(parsed).values() if may_refer else ():
        for raw in raws:
            target = target_of(raw)
            if target is not None and (target.folder, target.filename, None) not in rows:
                rows[(target.folder, target.filename, None)] = ReferenceRow(
                    workspace, branch, path, target.folder, target.filename, None, "filename"
                )
    for _, folder, record_id in iter_resolved_refs(parsed, schema):
        if (folder, None, record_id) not in rows:
            rows[(folder, None, record_id)] = ReferenceRow(
                workspace, branch, path, folder, None, record_id, "record_id"
            )
    return list(rows.values())


class _Batch:
    def __init__(self, writer: FileReferenceWriter) -> None:
        self.writer = writer
        self.schemas: dict[tuple[str, str], FolderSchema | None] = {}
        self.new_schemas: dict[tuple[str, str], JsonObject] = {}
        self.cleared: list[tuple[str, str]] = []
        self.sources: dict[tuple[str, str, str], tuple[Content, bool] | None] = {}
        """Each source's last content in the batch (and whether it may hold an @);
        the pointers are read at flush, only from the contents that survive the batch."""
        self.pinned: dict[tuple[str, str, str], FolderSchema | None] = {}
        """The schema a source was written under, where its folder's schema changed
        later in the batch; every other source is read with the schema of ``flush``."""

    def schema(self, workspace: str, folder: str) -> FolderSchema | None:
        key = (workspace, folder)
        if key not in self.schemas:
            self.schemas[key] = _parse(folder, self.writer.load_schema(workspace, folder))
        return self.schemas[key]

    def register(self, workspace: str, folder: str, data: JsonObject) -> None:
        old = self.schema(workspace, folder)
        for key in self.sources:
            if key[0] == workspace and key[2].rpartition("/")[0] == folder:
                self.pinned.setdefault(key, old)
        self.schemas[(workspace, folder)] = _parse(folder, data)
        self.new_schemas[(workspace, folder)] = data

    def replace(
        self,
        workspace: str,
        branch: str,
        path: str,
        content: Content | None,
        may_refer: bool = True,
    ) -> None:
        key = (workspace, branch, path)  # (a SourceKey at flush: cheaper per change)
        if self.pinned:
            self.pinned.pop(key, None)
        self.sources[key] = None if content is None else (content, may_refer)

    def clear_branch(self, workspace: str, branch: str) -> None:
        for key in [k for k in self.sources if k[0] == workspace and k[1] == branch]:
            del self.sources[key]
        self.cleared.append((workspace, branch))

    def flush(self) -> None:
        if self.new_schemas or self.cleared or self.sources:
            rows: list[ReferenceRow] = []
            for key, source in self.sources.items():
                if source is not None:
                    ws, _, path = key
                    schema = (
                        self.pinned[key]
                        if key in self.pinned
                        else self.schema(ws, path.rpartition("/")[0])
                    )
                    rows += references_of(*key, source[0], schema, source[1])
            self.writer.write(
                [(ws, folder, data) for (ws, folder), data in self.new_schemas.items()],
                self.cleared,
                [SourceKey(*key) for key in self.sources],
                rows,
            )


def _parse(folder: str, data: JsonObject | None) -> FolderSchema | None:
    if data is None:
        return None
    return FolderSchema.from_recorded(folder, data)


class FileReferenceProjection(Projection[FileReferenceWriter]):
    name = "file_reference"
    events = frozenset({"WorkspaceCreated", "SchemaRegistered", "MainChanged"}) | DRAFT_EVENTS

    def apply(
        self, events: Sequence[ProjectedEvent], ctx: ProjectionContext, writer: FileReferenceWriter
    ) -> None:
        batch = _Batch(writer)
        for event in events:
            name, data = event.name, event.data
            if name in ("WorkspaceCreated", "DraftStarted"):
                ctx.note(event)
            elif name in ("SchemaRegistered", "MainChanged"):
                ws = ctx.workspace_of(event.originator_id)
                if ws is None:
                    continue
                if name == "SchemaRegistered":
                    batch.register(ws, data["folder"], data["schema"])
                else:
                    change: FileChange
                    for change in data["changes"]:
                        batch.replace(ws, MAIN, change.path, change.content, event.may_refer)
            else:
                draft = ctx.draft_of(event.originator_id)
                if draft is None:
                    continue
                ws, branch = draft[0], draft_branch(draft[1])
                if name == "DraftFileWritten":
                    batch.replace(ws, branch, data["path"], data["content"], event.may_refer)
                elif name in ("DraftFileDeleted", "DraftFileReverted"):
                    batch.replace(ws, branch, data["path"], None)
                elif name == "DraftRebased":
                    for path in data["paths"]:
                        batch.replace(ws, branch, path, None)
                elif name == "DraftDiscarded":
                    batch.clear_branch(ws, branch)
        batch.flush()
