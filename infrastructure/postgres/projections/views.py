"""The read port on PostgreSQL: queries over the projections' tables.

``wait_for_position`` is woken by the NOTIFY that each projection batch sends
when it commits (``name:position``), through one listening connection per
``PostgresViews`` (a thread started on first use), not by polling.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from psycopg import sql
from psycopg.rows import dict_row

from application.projections import PROJECTION_NAMES
from application.projections.pipeline_status import counts_dict, pipeline_error
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
from infrastructure.postgres.availability import Availability, guarded_pool
from infrastructure.postgres.database import Database
from infrastructure.postgres.projections.parameters import columns
from infrastructure.postgres.projections.tables import ProjectionTables

_STATUS = (
    "SELECT s.*, (SELECT coalesce(json_agg(json_build_object('path', e.path, 'phase', e.phase,"
    " 'message', e.message, 'code', e.code, 'details', e.details)"
    " ORDER BY array_position(%s::text[], e.phase), e.path), '[]')"
    " FROM {pipeline_errors} e WHERE e.pipeline_id = s.pipeline_id) AS errors"
    " FROM {pipeline_status} s"
)
_PULL = (
    "SELECT pull_id, workspace, scope, state, created, updated, unchanged, deleted, error,"
    " started_at, finished_at FROM {pull_status}"
)
_PHASES = [str(phase) for phase in PHASES]
"""Phase order for SQL (``array_position``), as plain text."""


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class PostgresViews(Views):
    def __init__(
        self,
        database: Database,
        schema: str,
        pool_size: int = 4,
        *,
        availability: Availability | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.tables = ProjectionTables(schema)
        self.database = database
        self.pool = guarded_pool(
            database.conninfo, availability, max_size=pool_size, timeout=timeout, open=True
        )
        with self.pool.connection() as conn:
            self.tables.create(conn)
        self._positions: dict[str, int] = {}
        self._changed = threading.Condition()
        self._listener: threading.Thread | None = None
        self._closed = threading.Event()

    def close(self) -> None:
        self._closed.set()
        if self._listener is not None:
            self._listener.join(timeout=5)
        self.pool.close()

    def _all(self, template: Any, params: Sequence[Any] = ()) -> list[Any]:
        with self.pool.connection() as conn:
            return conn.execute(self.tables.q(template), params).fetchall()

    def _dicts(self, template: Any, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(self.tables.q(template), params).fetchall()

    # --- main and drafts -------------------------------------------------------
    def main_contents(self, workspace: str, paths: Iterable[str]) -> dict[str, JsonObject]:
        rows = self._all(
            "SELECT path, content FROM {main_files} WHERE workspace = %s AND path = ANY(%s)",
            (workspace, list(paths)),
        )
        return {path: content for path, content in rows}

    def main_paths_exist(self, workspace: str, paths: Iterable[str]) -> set[str]:
        rows = self._all(
            "SELECT path FROM {main_files} WHERE workspace = %s AND path = ANY(%s)",
            (workspace, list(paths)),
        )
        return {row[0] for row in rows}

    def main_folder_index(self, workspace: str, folder: str) -> dict[str, tuple[str, JsonObject]]:
        rows = self._all(
            "SELECT record_id, path, content FROM {main_files}"
            " WHERE workspace = %s AND folder = %s AND record_id IS NOT NULL",
            (workspace, folder),
        )
        return {rid: (path.rpartition("/")[2], content) for rid, path, content in rows}

    def draft_file(self, workspace: str, user: str, path: str) -> tuple[bool, JsonObject | None]:
        rows = self._all(
            'SELECT content FROM {draft_files} WHERE workspace = %s AND "user" = %s AND path = %s',
            (workspace, user, path),
        )
        return (True, rows[0][0]) if rows else (False, None)

    def draft_files(self, workspace: str, user: str) -> dict[str, JsonObject | None]:
        rows = self._all(
            'SELECT path, content FROM {draft_files} WHERE workspace = %s AND "user" = %s',
            (workspace, user),
        )
        return {path: content for path, content in rows}

    def draft_users(self, workspace: str) -> list[tuple[str, int]]:
        rows = self._all(
            'SELECT d."user", count(*) FROM {draft_files} d WHERE d.workspace = %s'
            " AND (d.content IS NOT NULL OR EXISTS (SELECT 1 FROM {main_files} m"
            " WHERE m.workspace = d.workspace AND m.path = d.path))"
            ' GROUP BY d."user" ORDER BY d."user" COLLATE "C"',
            (workspace,),
        )
        return [(user, count) for user, count in rows]

    # --- workspaces ----------------------------------------------------------------
    def workspace_ids(self) -> list[str]:
        rows = self._all(
            'SELECT DISTINCT workspace COLLATE "C" AS ws FROM {projection_workspaces} ORDER BY ws'
        )
        return [row[0] for row in rows]

    # --- FileIndex and FileReference ---------------------------------------------
    def record_ids(
        self, workspace: str, files: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        rows = self._all(
            "SELECT f.folder, f.filename, f.record_id FROM unnest(%s::text[], %s::text[])"
            " AS k(folder, filename) JOIN {file_index} f ON f.workspace = %s"
            " AND f.folder = k.folder AND f.filename = k.filename",
            (*columns(files, 2), workspace),
        )
        return {(folder, filename): rid for folder, filename, rid in rows}

    def _file_index(
        self, workspace: str, folder: str, column: str, value: str
    ) -> FileIndexEntry | None:
        query = sql.SQL(
            "SELECT folder, record_id, filename, last_seen_at FROM {} WHERE workspace = %s"
            " AND folder = %s AND {} = %s"
        ).format(self.tables.table("file_index"), sql.Identifier(column))
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(query, (workspace, folder, value)).fetchone()
        if row is None:
            return None
        return {**row, "last_seen_at": _iso(row["last_seen_at"])}

    def file_index_by_record(
        self, workspace: str, folder: str, record_id: str
    ) -> FileIndexEntry | None:
        return self._file_index(workspace, folder, "record_id", record_id)

    def file_index_by_filename(
        self, workspace: str, folder: str, filename: str
    ) -> FileIndexEntry | None:
        return self._file_index(workspace, folder, "filename", filename)

    def inbound_references(
        self,
        workspace: str,
        targets: Iterable[tuple[str, str, str | None]],
        branches: Sequence[str],
    ) -> list[str]:
        rows = self._all(
            "SELECT DISTINCT r.source_path FROM unnest(%s::text[], %s::text[], %s::text[])"
            " AS t(folder, filename, rid) JOIN {file_reference} r ON r.workspace = %s"
            " AND r.target_folder = t.folder AND r.branch = ANY(%s)"
            " AND (r.target_filename = t.filename OR r.target_record_id = t.rid)"
            " ORDER BY 1",
            (*columns(targets, 3), workspace, list(branches)),
        )
        return [row[0] for row in rows]

    def references(
        self,
        workspace: str,
        target_folder: str,
        target_filename: str | None = None,
        target_record_id: str | None = None,
    ) -> list[ReferenceEntry]:
        return self._dicts(
            "SELECT branch, source_path, target_folder, target_filename, target_record_id"
            " FROM {file_reference} WHERE workspace = %s AND target_folder = %s"
            " AND (target_filename = %s OR target_record_id = %s)"
            " ORDER BY branch, source_path",
            (workspace, target_folder, target_filename, target_record_id),
        )

    # --- pipelines -------------------------------------------------------------
    def _status(self, row: dict[str, Any]) -> PipelineStatus:
        errors = list(row["errors"])
        if row["error"]:
            errors.append(pipeline_error(row["state"], row["phase"], row["error"]))
        return {
            "pipeline_id": row["pipeline_id"],
            "workspace": row["workspace"],
            "user": row["user"],
            "state": row["state"],
            "phase": row["phase"],
            "counts": counts_dict(row["phases"], row["counts"]),
            "errors": errors,
            "created_at": _iso(row["created_at"]),
            "started_at": _iso(row["started_at"]),
            "finished_at": _iso(row["finished_at"]),
            "main_version": row["main_version"],
            "draft_version": row["draft_version"],
            "cancel_requested": row["cancel_requested"],
            "trace_id": row["trace_id"],
        }

    def pipeline_status(self, pipeline_id: str) -> PipelineStatus | None:
        rows = self._dicts(_STATUS + " WHERE s.pipeline_id = %s", (_PHASES, pipeline_id))
        return self._status(rows[0]) if rows else None

    def list_pipelines(
        self,
        workspace: str | None = None,
        user: str | None = None,
        state: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[PipelineStatus]:
        rows = self._dicts(
            _STATUS + " WHERE (%s::text IS NULL OR s.workspace = %s)"
            ' AND (%s::text IS NULL OR s."user" = %s) AND (%s::text IS NULL OR s.state = %s)'
            " AND (%s::text IS NULL OR (s.created_at, s.pipeline_id) < (SELECT b.created_at,"
            " b.pipeline_id FROM {pipeline_status} b WHERE b.pipeline_id = %s"
            " AND (%s::text IS NULL OR b.workspace = %s)))"
            " ORDER BY s.created_at DESC, s.pipeline_id DESC LIMIT %s",
            (
                *(_PHASES, workspace, workspace, user, user, state, state),
                *(before, before, workspace, workspace, limit),
            ),
        )
        return [self._status(row) for row in rows]

    def pipeline_entries(
        self, pipeline_id: str, phase: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        return self._dicts(
            "SELECT path, phase, status, record_id, error FROM {pipeline_entries}"
            " WHERE pipeline_id = %s AND (%s::text IS NULL OR phase = %s)"
            " AND (%s::text IS NULL OR status = %s)"
            " ORDER BY array_position(%s::text[], phase), seq",
            (pipeline_id, phase, phase, status, status, _PHASES),
        )

    def pipeline_entries_page(
        self,
        pipeline_id: str,
        phase: str | None,
        status: str | None,
        after: EntryCursor | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        rank, seq = after if after is not None else (-1, -1)
        rows = self._dicts(
            "SELECT * FROM (SELECT path, phase, status, record_id, error,"
            " array_position(%s::text[], phase) - 1 AS rank, seq FROM {pipeline_entries}"
            " WHERE pipeline_id = %s AND (%s::text IS NULL OR phase = %s)"
            " AND (%s::text IS NULL OR status = %s)) e"
            " WHERE (e.rank, e.seq) > (%s, %s) ORDER BY e.rank, e.seq LIMIT %s",
            (_PHASES, pipeline_id, phase, phase, status, status, rank, seq, limit),
        )
        for row in rows:
            row["cursor"] = (row.pop("rank"), row.pop("seq"))
        return rows

    def runnable_pipelines(self, limit: int = 100, after: str | None = None) -> list[str]:
        rows = self._all(
            "SELECT pipeline_id FROM {pipeline_status} WHERE state = 'running'"
            " AND (%s::text IS NULL OR (created_at, pipeline_id) > (SELECT b.created_at,"
            " b.pipeline_id FROM {pipeline_status} b WHERE b.pipeline_id = %s))"
            " ORDER BY created_at, pipeline_id LIMIT %s",
            (after, after, limit),
        )
        return [row[0] for row in rows]

    # --- pulls -----------------------------------------------------------------
    @staticmethod
    def _pull(row: dict[str, Any]) -> PullStatus:
        return {
            **row,
            "started_at": _iso(row["started_at"]),
            "finished_at": _iso(row["finished_at"]),
        }

    def pull_status(self, pull_id: str) -> PullStatus | None:
        rows = self._dicts(_PULL + " WHERE pull_id = %s", (pull_id,))
        return self._pull(rows[0]) if rows else None

    def list_pulls(
        self, workspace: str, state: str | None = None, limit: int = 50
    ) -> list[PullStatus]:
        rows = self._dicts(
            _PULL + " WHERE workspace = %s AND (%s::text IS NULL OR state = %s)"
            " ORDER BY started_at DESC, pull_id DESC LIMIT %s",
            (workspace, state, state, limit),
        )
        return [self._pull(row) for row in rows]

    def runnable_pulls(self, limit: int = 100, after: str | None = None) -> list[str]:
        rows = self._all(
            "SELECT pull_id FROM {pull_status} WHERE state = 'running'"
            " AND (%s::text IS NULL OR (started_at, pull_id) > (SELECT b.started_at, b.pull_id"
            " FROM {pull_status} b WHERE b.pull_id = %s))"
            " ORDER BY started_at, pull_id LIMIT %s",
            (after, after, limit),
        )
        return [row[0] for row in rows]

    # --- read-your-writes ----------------------------------------------------------
    def position(self, projection_name: str) -> int:
        rows = self._all(
            "SELECT position FROM {projection_tracking} WHERE name = %s", (projection_name,)
        )
        return int(rows[0][0]) if rows else 0

    def wait_for_position(
        self, position: int, timeout: float, names: Sequence[str] | None = None
    ) -> bool:
        wanted = list(names or PROJECTION_NAMES)
        with self._changed:
            if self._listener is None:
                self._listener = threading.Thread(
                    target=self._listen, name="projection-positions", daemon=True
                )
                self._listener.start()
            return self._changed.wait_for(
                lambda: all(self._positions.get(n, -1) >= position for n in wanted), timeout
            )

    def _listen(self) -> None:
        """LISTEN first, then read the table: no position can slip between the two."""
        channel = sql.Identifier(self.tables.channel)
        while not self._closed.is_set():
            try:
                with self.database.connect(autocommit=True) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(channel))
                    rows = conn.execute(
                        self.tables.q("SELECT name, position FROM {projection_tracking}")
                    ).fetchall()
                    self._update({str(n): int(p) for n, p in rows}, replace=True)
                    while not self._closed.is_set():
                        for note in conn.notifies(timeout=0.5):
                            pairs = (item.rpartition(":") for item in note.payload.split(","))
                            self._update({n: int(p) for n, _, p in pairs})
            except Exception:
                self._closed.wait(1.0)

    def _update(self, positions: dict[str, int], replace: bool = False) -> None:
        with self._changed:
            if replace:
                self._positions = positions
            else:
                self._positions.update(positions)
            self._changed.notify_all()
