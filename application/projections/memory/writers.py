"""In-memory adapters of the projection ports.

They keep the same tables as the PostgreSQL adapter, as dicts, and follow the
same contract (including FileReference's derived target column and the rows a
conflicting insert leaves alone), so the projection logic and the applications
above it run without a database; a contract test runs the same events through
both adapters and compares the rows.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from application.projections.pipeline_status import slot
from application.projections.ports import (
    DraftFileRow,
    DraftFilesWriter,
    EntryRow,
    EntryUpdate,
    ErrorRow,
    FileIndexRow,
    FileIndexWriter,
    FileKey,
    FileReferenceWriter,
    MainFileRow,
    MainFilesWriter,
    PipelineEntriesWriter,
    PipelineStatusWriter,
    ProjectionContext,
    PullStatusChange,
    PullStatusRow,
    PullStatusWriter,
    ReferenceRow,
    SeenRow,
    SourceKey,
    StatusChange,
    StatusRow,
)
from application.projections.pull_status import COUNTS
from domain.json_types import JsonObject


@dataclass
class MemoryTables:
    workspaces: dict[str, str] = field(default_factory=dict)
    drafts: dict[str, tuple[str, str]] = field(default_factory=dict)
    main_files: dict[tuple[str, str], MainFileRow] = field(default_factory=dict)
    draft_files: dict[tuple[str, str, str], DraftFileRow] = field(default_factory=dict)
    file_index: dict[tuple[str, str, str], FileIndexRow] = field(default_factory=dict)
    schemas: dict[tuple[str, str], JsonObject] = field(default_factory=dict)
    references: list[ReferenceRow] = field(default_factory=list)
    entries: dict[tuple[str, str, str], EntryRow] = field(default_factory=dict)
    status: dict[str, StatusRow] = field(default_factory=dict)
    errors: dict[tuple[str, str, str], ErrorRow] = field(default_factory=dict)
    pulls: dict[str, PullStatusRow] = field(default_factory=dict)

    def resolve(self, ref: ReferenceRow) -> ReferenceRow:
        """Fill the target column the file did not write, from FileIndex."""
        if ref.pointer == "filename":
            rid = next(
                (
                    r.record_id
                    for r in self.file_index.values()
                    if (r.workspace, r.folder, r.filename)
                    == (ref.workspace, ref.target_folder, ref.target_filename)
                ),
                None,
            )
            return ref._replace(target_record_id=rid)
        row = self.file_index.get((ref.workspace, ref.target_folder, ref.target_record_id or ""))
        return ref._replace(target_filename=row.filename if row else None)


class MemoryContext(ProjectionContext):
    def __init__(self, tables: MemoryTables) -> None:
        self.tables = tables

    def workspace_of(self, originator_id: str) -> str | None:
        return self.tables.workspaces.get(originator_id)

    def draft_of(self, originator_id: str) -> tuple[str, str] | None:
        return self.tables.drafts.get(originator_id)

    def remember_workspace(self, originator_id: str, workspace_id: str) -> None:
        self.tables.workspaces[originator_id] = workspace_id

    def remember_draft(self, originator_id: str, workspace_id: str, user: str) -> None:
        self.tables.drafts[originator_id] = (workspace_id, user)


class MemoryMainFiles(MainFilesWriter):
    def __init__(self, tables: MemoryTables) -> None:
        self.tables = tables

    def write(self, removed: Sequence[tuple[str, str]], rows: Sequence[MainFileRow]) -> None:
        for key in removed:
            self.tables.main_files.pop(key, None)
        for row in rows:
            self.tables.main_files[(row.workspace, row.path)] = row


class MemoryDraftFiles(DraftFilesWriter):
    def __init__(self, tables: MemoryTables) -> None:
        self.tables = tables

    def write(
        self,
        discarded: Sequence[tuple[str, str]],
        removed: Sequence[tuple[str, str, str]],
        rows: Sequence[DraftFileRow],
    ) -> None:
        files = self.tables.draft_files
        for ws, user in discarded:
            for key in [k for k in files if k[:2] == (ws, user)]:
                del files[key]
        for key in removed:
            files.pop(key, None)
        for row in rows:
            files[(row.workspace, row.user, row.path)] = row


class MemoryFileIndex(FileIndexWriter):
    def __init__(self, tables: MemoryTables) -> None:
        self.tables = tables

    def write(
        self,
        by_record: Collection[FileKey],
        by_filename: Collection[FileKey],
        rows: Sequence[FileIndexRow],
        seen: Sequence[SeenRow],
    ) -> None:
        index = self.tables.file_index
        for key, row in list(index.items()):
            if key in by_record or (row.workspace, row.folder, row.filename) in by_filename:
                del index[key]
        for row in rows:
            index[(row.workspace, row.folder, row.record_id)] = row
        for s in seen:
            found = index.get((s.workspace, s.folder, s.record_id))
            if found is not None:
                index[(s.workspace, s.folder, s.record_id)] = found._replace(
                    last_seen_at=s.last_seen_at
                )
        self.tables.references = [self.tables.resolve(r) for r in self.tables.references]


class MemoryFileReference(FileReferenceWriter):
    def __init__(self, tables: MemoryTables) -> None:
        self.tables = tables

    def load_schema(self, workspace: str, folder: str) -> JsonObject | None:
        return self.tables.schemas.get((workspace, folder))

    def write(
        self,
        schemas: Sequence[tuple[str, str, JsonObject]],
        cleared_branches: Sequence[tuple[str, str]],
        replaced: Sequence[SourceKey],
        rows: Sequence[ReferenceRow],
    ) -> None:
        for ws, folder, data in schemas:
            self.tables.schemas[(ws, folder)] = data
        branches, sources = set(cleared_branches), set(replaced)
        self.tables.references = [
            r
            for r in self.tables.references
            if (r.workspace, r.branch) not in branches
            and SourceKey(r.workspace, r.branch, r.source_path) not in sources
        ] + [self.tables.resolve(r) for r in rows]


class MemoryPipelineEntries(PipelineEntriesWriter):
    def __init__(self, tables: MemoryTables) -> None:
        self.tables = tables

    def write(self, rows: Sequence[EntryRow], updates: Sequence[EntryUpdate]) -> None:
        for row in rows:
            self.tables.entries[(row.pipeline_id, row.phase, row.path)] = row
        for u in updates:
            key = (u.pipeline_id, u.phase, u.path)
            old = self.tables.entries.get(key)
            if old is not None:
                rid = u.record_id if u.set_record_id else old.record_id
                self.tables.entries[key] = old._replace(
                    status=u.status, record_id=rid, error=u.error
                )

    def reset(self, pipeline_id: str, keys: Sequence[tuple[str, str]]) -> None:
        for phase, path in keys:
            old = self.tables.entries.get((pipeline_id, phase, path))
            if old is not None and old.status in ("failed", "skipped"):
                self.tables.entries[(pipeline_id, phase, path)] = old._replace(
                    status="planned", error=None
                )


class MemoryPipelineStatus(PipelineStatusWriter):
    def __init__(self, tables: MemoryTables) -> None:
        self.tables = tables

    def write(
        self,
        rows: Sequence[StatusRow],
        changes: Sequence[StatusChange],
        errors: Sequence[ErrorRow],
    ) -> None:
        for row in rows:
            self.tables.status.setdefault(row.pipeline_id, row)
        for c in changes:
            old = self.tables.status.get(c.pipeline_id)
            if old is None:
                continue
            self.tables.status[c.pipeline_id] = old._replace(
                state=c.state or old.state,
                phase=c.phase or old.phase,
                error=c.error if c.set_error else old.error,
                finished_at=c.finished_at if c.set_finished_at else old.finished_at,
                cancel_requested=(
                    old.cancel_requested if c.cancel_requested is None else c.cancel_requested
                ),
                started_at=old.started_at or c.started_at,
                updated_at=c.updated_at,
                counts=[a + b for a, b in zip(old.counts, c.counts_delta, strict=True)],
            )
        for e in errors:
            self.tables.errors[(e.pipeline_id, e.phase, e.path)] = e

    def reset(self, pipeline_id: str, keys: Sequence[tuple[str, str]]) -> None:
        row = self.tables.status.get(pipeline_id)
        counts = list(row.counts) if row else []
        for phase, path in keys:
            error = self.tables.errors.pop((pipeline_id, phase, path), None)
            if error is not None and row is not None:
                counts[slot(phase, error.status)] -= 1
        if row is not None:
            self.tables.status[pipeline_id] = row._replace(counts=counts)


class MemoryPullStatus(PullStatusWriter):
    def __init__(self, tables: MemoryTables) -> None:
        self.tables = tables

    def write(self, rows: Sequence[PullStatusRow], changes: Sequence[PullStatusChange]) -> None:
        pulls = self.tables.pulls
        for row in rows:
            pulls.setdefault(row.pull_id, row)
        for c in changes:
            old = pulls.get(c.pull_id)
            if old is None:
                continue
            base = [0] * len(COUNTS) if c.totals else [getattr(old, n) for n in COUNTS]
            created, updated, unchanged, deleted = (
                a + b for a, b in zip(base, c.counts, strict=True)
            )
            pulls[c.pull_id] = old._replace(
                state=c.state or old.state,
                created=created,
                updated=updated,
                unchanged=unchanged,
                deleted=deleted,
                error=c.error if c.set_error else old.error,
                finished_at=c.finished_at if c.set_finished_at else old.finished_at,
                updated_at=c.updated_at,
            )
