"""The read port in memory: the projections' tables as dicts, brought up to date on each read.

The tables are fed by the same pure projections, through the same decoder, as
on PostgreSQL, from the notification log of the application's in-memory (POPO)
recorder. There is no runner thread to wait for: every query first applies
what the log holds beyond the position, so a read sees every write saved
before it, and ``wait_for_position`` returns at once. Answers are those of
``PostgresViews`` (the same keys, orders and empty cases; text sorts by code
point, as under the C collation), which the views contract test checks.

The worker reads from its threads while commands save from others, so one
lock covers catching up and reading.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from eventsourcing.persistence import ApplicationRecorder

from application.projections import PROJECTION_NAMES
from application.projections.events import parse_content
from application.projections.memory.projector import MemoryProjector, projected_events
from application.projections.memory.writers import MemoryTables
from application.projections.pipeline_status import counts_dict, pipeline_error
from application.projections.ports import StatusRow
from application.projections.pull_status import status_of
from application.views import (
    EntryCursor,
    FileIndexEntry,
    PipelineStatus,
    PullStatus,
    ReferenceEntry,
    Views,
)
from domain.json_types import JsonObject
from domain.plan import PHASES

PAGE_SIZE = 1000
"""Notifications read and projected as one batch while catching up."""


_PHASE_ORDER: dict[str, int] = {str(phase): n for n, phase in enumerate(PHASES)}


def _phase_order(phase: str) -> int:
    """Where ``array_position`` puts a phase: in run order, unknown phases last."""
    return _PHASE_ORDER.get(phase, len(_PHASE_ORDER))


def _moment(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp)


_FILE_INDEX_COLUMNS = ("folder", "record_id", "filename", "last_seen_at")
_REFERENCE_COLUMNS = (
    "branch",
    "source_path",
    "target_folder",
    "target_filename",
    "target_record_id",
)
_ENTRY_COLUMNS = ("path", "phase", "status", "record_id", "error")
"""(What each ``PostgresViews`` query selects, in its order: the keys of its dicts.)"""


def _columns(row: object, columns: Sequence[str]) -> dict[str, Any]:
    return {column: getattr(row, column) for column in columns}


class MemoryViews(Views):
    def __init__(self, page_size: int = PAGE_SIZE) -> None:
        self.tables = MemoryTables()
        self.page_size = page_size
        self._projector = MemoryProjector(self.tables)
        self._recorder: ApplicationRecorder | None = None
        self._position = 0
        self._lock = threading.Lock()

    def follow(self, recorder: ApplicationRecorder) -> None:
        """Project this notification log (the application's: it exists only once the
        application is built, and the application is built with these views)."""
        self._recorder = recorder

    @contextmanager
    def _current(self) -> Iterator[MemoryTables]:
        """The tables with every recorded notification applied, held for one query."""
        with self._lock:
            self._catch_up()
            yield self.tables

    def _catch_up(self) -> None:
        if self._recorder is None:
            raise RuntimeError("these views follow no recorder yet: call follow() first")
        while True:
            notifications = self._recorder.select_notifications(
                self._position, self.page_size, inclusive_of_start=False
            )
            if not notifications:
                return
            self._projector.apply(projected_events(notifications))
            self._position = notifications[-1].id

    # --- main and drafts -------------------------------------------------------
    def main_contents(self, workspace: str, paths: Iterable[str]) -> dict[str, JsonObject]:
        with self._current() as tables:
            rows = (tables.main_files.get((workspace, path)) for path in paths)
            return {row.path: parse_content(row.content) for row in rows if row is not None}

    def main_paths_exist(self, workspace: str, paths: Iterable[str]) -> set[str]:
        with self._current() as tables:
            return {path for path in paths if (workspace, path) in tables.main_files}

    def main_folder_index(self, workspace: str, folder: str) -> dict[str, tuple[str, JsonObject]]:
        with self._current() as tables:
            return {
                row.record_id: (row.path.rpartition("/")[2], parse_content(row.content))
                for row in tables.main_files.values()
                if row.workspace == workspace and row.folder == folder and row.record_id is not None
            }

    def draft_file(self, workspace: str, user: str, path: str) -> tuple[bool, JsonObject | None]:
        with self._current() as tables:
            row = tables.draft_files.get((workspace, user, path))
            if row is None:
                return False, None
            return True, None if row.content is None else parse_content(row.content)

    def draft_files(self, workspace: str, user: str) -> dict[str, JsonObject | None]:
        with self._current() as tables:
            return {
                row.path: None if row.content is None else parse_content(row.content)
                for row in tables.draft_files.values()
                if row.workspace == workspace and row.user == user
            }

    def draft_users(self, workspace: str) -> list[tuple[str, int]]:
        counts: dict[str, int] = {}
        with self._current() as tables:
            for row in tables.draft_files.values():
                changes = row.content is not None or (workspace, row.path) in tables.main_files
                if row.workspace == workspace and changes:
                    counts[row.user] = counts.get(row.user, 0) + 1
        return sorted(counts.items())

    # --- workspaces ----------------------------------------------------------------
    def workspace_ids(self) -> list[str]:
        with self._current() as tables:
            return sorted(set(tables.workspaces.values()))

    # --- FileIndex and FileReference ---------------------------------------------
    def record_ids(
        self, workspace: str, files: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        with self._current() as tables:
            by_filename = {
                (row.folder, row.filename): row.record_id
                for row in tables.file_index.values()
                if row.workspace == workspace
            }
        return {file: by_filename[file] for file in files if file in by_filename}

    def file_index_by_record(
        self, workspace: str, folder: str, record_id: str
    ) -> FileIndexEntry | None:
        with self._current() as tables:
            row = tables.file_index.get((workspace, folder, record_id))
        return None if row is None else _columns(row, _FILE_INDEX_COLUMNS)

    def file_index_by_filename(
        self, workspace: str, folder: str, filename: str
    ) -> FileIndexEntry | None:
        with self._current() as tables:
            found = [
                row
                for row in tables.file_index.values()
                if (row.workspace, row.folder, row.filename) == (workspace, folder, filename)
            ]
        return _columns(found[0], _FILE_INDEX_COLUMNS) if found else None

    def inbound_references(
        self,
        workspace: str,
        targets: Iterable[tuple[str, str, str | None]],
        branches: Sequence[str],
    ) -> list[str]:
        by_filename, by_record = set(), set()
        for folder, filename, record_id in targets:
            if filename is not None:
                by_filename.add((folder, filename))
            if record_id is not None:
                by_record.add((folder, record_id))
        with self._current() as tables:
            sources = {
                r.source_path
                for r in tables.references
                if r.workspace == workspace
                and r.branch in branches
                and (
                    (r.target_folder, r.target_filename) in by_filename
                    or (r.target_folder, r.target_record_id) in by_record
                )
            }
        return sorted(sources)

    def references(
        self,
        workspace: str,
        target_folder: str,
        target_filename: str | None = None,
        target_record_id: str | None = None,
    ) -> list[ReferenceEntry]:
        with self._current() as tables:
            found = [
                r
                for r in tables.references
                if r.workspace == workspace
                and r.target_folder == target_folder
                and (
                    (target_filename is not None and r.target_filename == target_filename)
                    or (target_record_id is not None and r.target_record_id == target_record_id)
                )
            ]
        found.sort(key=lambda r: (r.branch, r.source_path))
        return [_columns(r, _REFERENCE_COLUMNS) for r in found]

    # --- pipelines -------------------------------------------------------------
    def _status(self, tables: MemoryTables, row: StatusRow) -> PipelineStatus:
        failed = sorted(
            (e for e in tables.errors.values() if e.pipeline_id == row.pipeline_id),
            key=lambda e: (_phase_order(e.phase), e.path),
        )
        errors: list[dict[str, Any]] = [
            {
                "path": e.path,
                "phase": e.phase,
                "message": e.message,
                "code": e.code,
                "details": e.details,
            }
            for e in failed
        ]
        if row.error:
            errors.append(pipeline_error(row.state, row.phase, row.error))
        return {
            "pipeline_id": row.pipeline_id,
            "workspace": row.workspace,
            "user": row.user,
            "state": row.state,
            "phase": row.phase,
            "counts": counts_dict(row.phases, row.counts),
            "errors": errors,
            "created_at": row.created_at,
            "started_at": row.started_at,
            "finished_at": row.finished_at,
            "main_version": row.main_version,
            "draft_version": row.draft_version,
            "cancel_requested": row.cancel_requested,
            "trace_id": row.trace_id,
        }

    def pipeline_status(self, pipeline_id: str) -> PipelineStatus | None:
        with self._current() as tables:
            row = tables.status.get(pipeline_id)
            return None if row is None else self._status(tables, row)

    def list_pipelines(
        self,
        workspace: str | None = None,
        user: str | None = None,
        state: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[PipelineStatus]:
        with self._current() as tables:
            rows = [
                row
                for row in tables.status.values()
                if (workspace is None or row.workspace == workspace)
                and (user is None or row.user == user)
                and (state is None or row.state == state)
            ]
            if before is not None:
                anchor = tables.status.get(before)
                if anchor is None or (workspace is not None and anchor.workspace != workspace):
                    return []  # (the row comparison with a missing pipeline is NULL)
                bound = (_moment(anchor.created_at), anchor.pipeline_id)
                rows = [r for r in rows if (_moment(r.created_at), r.pipeline_id) < bound]
            rows.sort(key=lambda r: (_moment(r.created_at), r.pipeline_id), reverse=True)
            return [self._status(tables, row) for row in rows[:limit]]

    def pipeline_entries(
        self, pipeline_id: str, phase: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        with self._current() as tables:
            rows = [
                row
                for row in tables.entries.values()
                if row.pipeline_id == pipeline_id
                and (phase is None or row.phase == phase)
                and (status is None or row.status == status)
            ]
        rows.sort(key=lambda row: (_phase_order(row.phase), row.seq))
        return [_columns(row, _ENTRY_COLUMNS) for row in rows]

    def pipeline_entries_page(
        self,
        pipeline_id: str,
        phase: str | None,
        status: str | None,
        after: EntryCursor | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        bound = after if after is not None else (-1, -1)
        with self._current() as tables:
            rows = [
                ((_phase_order(row.phase), row.seq), row)
                for row in tables.entries.values()
                if row.pipeline_id == pipeline_id
                and (phase is None or row.phase == phase)
                and (status is None or row.status == status)
            ]
        rows = sorted((c for c in rows if c[0] > bound), key=lambda c: c[0])[:limit]
        return [_columns(row, _ENTRY_COLUMNS) | {"cursor": cursor} for cursor, row in rows]

    def runnable_pipelines(self, limit: int = 100, after: str | None = None) -> list[str]:
        with self._current() as tables:
            running = [row for row in tables.status.values() if row.state == "running"]
            anchor = None if after is None else tables.status.get(after)
        if after is not None:
            if anchor is None:
                return []  # (as the row comparison with a missing pipeline in SQL)
            bound = (_moment(anchor.created_at), anchor.pipeline_id)
            running = [r for r in running if (_moment(r.created_at), r.pipeline_id) > bound]
        running.sort(key=lambda row: (_moment(row.created_at), row.pipeline_id))
        return [row.pipeline_id for row in running[:limit]]

    # --- pulls -----------------------------------------------------------------
    def pull_status(self, pull_id: str) -> PullStatus | None:
        with self._current() as tables:
            row = tables.pulls.get(pull_id)
        return None if row is None else status_of(row)

    def list_pulls(
        self, workspace: str, state: str | None = None, limit: int = 50
    ) -> list[PullStatus]:
        with self._current() as tables:
            rows = [
                row
                for row in tables.pulls.values()
                if row.workspace == workspace and (state is None or row.state == state)
            ]
        rows.sort(key=lambda r: (_moment(r.started_at), r.pull_id), reverse=True)
        return [status_of(row) for row in rows[:limit]]

    def runnable_pulls(self, limit: int = 100, after: str | None = None) -> list[str]:
        with self._current() as tables:
            running = [row for row in tables.pulls.values() if row.state == "running"]
            anchor = None if after is None else tables.pulls.get(after)
        if after is not None:
            if anchor is None:
                return []
            bound = (_moment(anchor.started_at), anchor.pull_id)
            running = [r for r in running if (_moment(r.started_at), r.pull_id) > bound]
        running.sort(key=lambda r: (_moment(r.started_at), r.pull_id))
        return [row.pull_id for row in running[:limit]]

    # --- read-your-writes ----------------------------------------------------------
    def position(self, projection_name: str) -> int:
        with self._lock:
            return self._position if projection_name in PROJECTION_NAMES else 0

    def wait_for_position(
        self, position: int, timeout: float, names: Sequence[str] | None = None
    ) -> bool:
        """Catch up now, so nothing is left to wait for: ``timeout`` goes unused, and a name
        that no projection has is never reached (as on PostgreSQL)."""
        with self._current():
            reached = self._position >= position
        return reached and all(name in PROJECTION_NAMES for name in names or ())
