"""PostgreSQL adapters of the projection ports: each writer call is a few set-based statements.

Rows travel as ONE JSON document per statement (an array of rows, each an
array of columns), encoded by msgspec in a single call and unpacked on the
server with ``jsonb_array_elements``: a file's content rides inside its row as
the JSON text it was recorded as, so it is neither parsed nor serialised
again, and no per-value Python work (like psycopg's array dumpers) is left.
The statements run on the runner's connection inside the batch's transaction,
so the view change commits together with the tracking position.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

import msgspec
from psycopg import Connection

from application.projections.ports import (
    FileIndexRow,
    FileIndexWriter,
    FileKey,
    FileReferenceWriter,
    ProjectionContext,
    ReferenceRow,
    SeenRow,
    SourceKey,
)
from domain.json_types import JsonObject
from infrastructure.postgres.projection_tables import ProjectionTables


def columns(rows: Iterable[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows -> one list per column (the arrays that ``unnest`` turns back into rows)."""
    cols: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for index in range(width):
            cols[index].append(row[index])
    return cols


_ENCODER = msgspec.json.Encoder()


def rows_json(rows: Iterable[Sequence[Any]]) -> str:
    """Rows (tuples, named or not) -> ``[[col, ...], ...]``, the parameter of ``ROWS``.

    A file's ``Content`` is written into the document as the JSON text it is.
    """
    return _ENCODER.encode(rows if isinstance(rows, list) else list(rows)).decode()


def dumps(value: Any) -> str | None:
    return None if value is None else _ENCODER.encode(value).decode()


class ProjectionCaches:
    """Per-process memory of the shared facts and of FileReference's schemas.

    Cleared whenever a batch fails, so nothing learned in a rolled-back batch
    (a schema registered later in the stream, say) outlives it.
    """

    def __init__(self) -> None:
        self.workspaces: dict[str, str] = {}
        self.drafts: dict[str, tuple[str, str]] = {}
        self.schemas: dict[tuple[str, str], JsonObject | None] = {}

    def clear(self) -> None:
        self.workspaces.clear()
        self.drafts.clear()
        self.schemas.clear()


class PostgresContext(ProjectionContext):
    """Shared facts read through the cache; new ones written in the batch's transaction."""

    def __init__(self, conn: Connection[Any], tables: ProjectionTables, caches: ProjectionCaches):
        self.conn, self.tables, self.caches = conn, tables, caches
        self.new_workspaces: dict[str, str] = {}
        self.new_drafts: dict[str, tuple[str, str]] = {}

    def workspace_of(self, originator_id: str) -> str | None:
        found = self.caches.workspaces.get(originator_id)
        if found is None:
            row = self.conn.execute(
                self.tables.q(
                    "SELECT workspace FROM {projection_workspaces} WHERE originator_id = %s::uuid"
                ),
                (originator_id,),
            ).fetchone()
            if row is not None:
                found = self.caches.workspaces[originator_id] = row[0]
        return found

    def draft_of(self, originator_id: str) -> tuple[str, str] | None:
        found = self.caches.drafts.get(originator_id)
        if found is None:
            row = self.conn.execute(
                self.tables.q(
                    'SELECT workspace, "user" FROM {projection_drafts}'
                    " WHERE originator_id = %s::uuid"
                ),
                (originator_id,),
            ).fetchone()
            if row is not None:
                found = self.caches.drafts[originator_id] = (row[0], row[1])
        return found

    def remember_workspace(self, originator_id: str, workspace_id: str) -> None:
        if self.caches.workspaces.get(originator_id) != workspace_id:
            self.caches.workspaces[originator_id] = workspace_id
            self.new_workspaces[originator_id] = workspace_id

    def remember_draft(self, originator_id: str, workspace_id: str, user: str) -> None:
        if self.caches.drafts.get(originator_id) != (workspace_id, user):
            self.caches.drafts[originator_id] = (workspace_id, user)
            self.new_drafts[originator_id] = (workspace_id, user)

    def flush(self) -> None:
        q = self.tables.q
        if self.new_workspaces:
            self.conn.execute(
                q(
                    "INSERT INTO {projection_workspaces}"
                    " SELECT * FROM unnest(%b::text[]::uuid[], %b::text[])"
                    " ON CONFLICT DO NOTHING"
                ),
                (list(self.new_workspaces), list(self.new_workspaces.values())),
            )
        if self.new_drafts:
            ws, users = columns(self.new_drafts.values(), 2)
            self.conn.execute(
                q(
                    "INSERT INTO {projection_drafts}"
                    " SELECT * FROM unnest(%b::text[]::uuid[], %b::text[], %b::text[])"
                    " ON CONFLICT DO NOTHING"
                ),
                (list(self.new_drafts), ws, users),
            )
        self.new_workspaces.clear()
        self.new_drafts.clear()


def resolve_references(
    conn: Connection[Any],
    tables: ProjectionTables,
    by_record: set[tuple[str, str, str]],
    by_filename: set[tuple[str, str, str]],
) -> None:
    """Re-derive FileReference's other target column for pointers at these FileIndex keys.

    Both the FileIndex and the FileReference projections call this, maybe from
    two processes; a transaction-scoped advisory lock orders them so that the
    later one always sees the other's committed rows (no write skew).
    """
    if not by_record and not by_filename:
        return
    q = tables.q
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (tables.lock_key("resolve"),))
    if by_record:
        conn.execute(
            q(
                "UPDATE {file_reference} r SET target_filename = k.filename"
                " FROM (SELECT k.ws, k.folder, k.rid, f.filename"
                "  FROM (SELECT e->>0 AS ws, e->>1 AS folder, e->>2 AS rid"
                "   FROM jsonb_array_elements(%s::jsonb) AS e) AS k"
                "  LEFT JOIN {file_index} f ON f.workspace = k.ws AND f.folder = k.folder"
                "   AND f.record_id = k.rid) AS k"
                " WHERE r.pointer = 'record_id' AND r.workspace = k.ws"
                " AND r.target_folder = k.folder AND r.target_record_id = k.rid"
                " AND r.target_filename IS DISTINCT FROM k.filename"
            ),
            (rows_json(by_record),),
        )
    if by_filename:
        conn.execute(
            q(
                "UPDATE {file_reference} r SET target_record_id = k.record_id"
                " FROM (SELECT k.ws, k.folder, k.filename, f.record_id"
                "  FROM (SELECT e->>0 AS ws, e->>1 AS folder, e->>2 AS filename"
                "   FROM jsonb_array_elements(%s::jsonb) AS e) AS k"
                "  LEFT JOIN {file_index} f ON f.workspace = k.ws AND f.folder = k.folder"
                "   AND f.filename = k.filename) AS k"
                " WHERE r.pointer = 'filename' AND r.workspace = k.ws"
                " AND r.target_folder = k.folder AND r.target_filename = k.filename"
                " AND r.target_record_id IS DISTINCT FROM k.record_id"
            ),
            (rows_json(by_filename),),
        )


class PostgresFileIndex(FileIndexWriter):
    def __init__(self, conn: Connection[Any], tables: ProjectionTables) -> None:
        self.conn, self.tables = conn, tables

    def write(
        self,
        by_record: Collection[FileKey],
        by_filename: Collection[FileKey],
        rows: Sequence[FileIndexRow],
        seen: Sequence[SeenRow],
    ) -> None:
        q, conn = self.tables.q, self.conn
        gone: list[tuple[str, str, str, str]] = []
        if by_record:
            gone += conn.execute(
                q(
                    "DELETE FROM {file_index} f"
                    " USING jsonb_array_elements(%s::jsonb) AS k WHERE f.workspace = k->>0"
                    " AND f.folder = k->>1 AND f.record_id = k->>2"
                    " RETURNING f.workspace, f.folder, f.record_id, f.filename"
                ),
                (rows_json(by_record),),
            ).fetchall()
        if by_filename:
            gone += conn.execute(
                q(
                    "DELETE FROM {file_index} f"
                    " USING jsonb_array_elements(%s::jsonb) AS k WHERE f.workspace = k->>0"
                    " AND f.folder = k->>1 AND f.filename = k->>2"
                    " RETURNING f.workspace, f.folder, f.record_id, f.filename"
                ),
                (rows_json(by_filename),),
            ).fetchall()
        if rows:
            conn.execute(
                q(
                    "INSERT INTO {file_index}"
                    " (workspace, folder, record_id, filename, last_seen_at)"
                    " SELECT k->>0, k->>1, k->>2, k->>3, (k->>4)::timestamptz"
                    " FROM jsonb_array_elements(%s::jsonb) AS k"
                ),
                (rows_json(rows),),
            )
        if seen:
            conn.execute(
                q(
                    "UPDATE {file_index} f SET last_seen_at = (k->>3)::timestamptz"
                    " FROM jsonb_array_elements(%s::jsonb) AS k"
                    " WHERE f.workspace = k->>0 AND f.folder = k->>1 AND f.record_id = k->>2"
                ),
                (rows_json(seen),),
            )
        # Only keys whose pairing changed can change a reference's derived column;
        # content updates of a known record (the common case) resolve nothing.
        before_r = {(ws, f, rid): name for ws, f, rid, name in gone}
        before_f = {(ws, f, name): rid for ws, f, rid, name in gone}
        after_r = {(r.workspace, r.folder, r.record_id): r.filename for r in rows}
        after_f = {(r.workspace, r.folder, r.filename): r.record_id for r in rows}
        resolve_references(
            conn,
            self.tables,
            {k for k in (*by_record, *before_r) if before_r.get(k) != after_r.get(k)},
            {k for k in (*by_filename, *before_f) if before_f.get(k) != after_f.get(k)},
        )


class PostgresFileReference(FileReferenceWriter):
    def __init__(
        self, conn: Connection[Any], tables: ProjectionTables, caches: ProjectionCaches
    ) -> None:
        self.conn, self.tables, self.caches = conn, tables, caches

    def load_schema(self, workspace: str, folder: str) -> JsonObject | None:
        key = (workspace, folder)
        if key not in self.caches.schemas:
            row = self.conn.execute(
                self.tables.q(
                    "SELECT schema FROM {file_reference_schemas} WHERE workspace=%s AND folder=%s"
                ),
                key,
            ).fetchone()
            self.caches.schemas[key] = None if row is None else row[0]
        return self.caches.schemas[key]

    def write(
        self,
        schemas: Sequence[tuple[str, str, JsonObject]],
        cleared_branches: Sequence[tuple[str, str]],
        replaced: Sequence[SourceKey],
        rows: Sequence[ReferenceRow],
    ) -> None:
        q, conn = self.tables.q, self.conn
        if schemas:
            conn.execute(
                q(
                    "INSERT INTO {file_reference_schemas}"
                    " SELECT k->>0, k->>1, k->2 FROM jsonb_array_elements(%s::jsonb) AS k"
                    " ON CONFLICT (workspace, folder) DO UPDATE SET schema = excluded.schema"
                ),
                (rows_json(schemas),),
            )
            for w, f, d in schemas:
                self.caches.schemas[(w, f)] = d
        if cleared_branches:
            conn.execute(
                q(
                    "DELETE FROM {file_reference} r USING jsonb_array_elements(%s::jsonb) AS k"
                    " WHERE r.workspace = k->>0 AND r.branch = k->>1"
                ),
                (rows_json(cleared_branches),),
            )
        if replaced:
            conn.execute(
                q(
                    "DELETE FROM {file_reference} r"
                    " USING jsonb_array_elements(%s::jsonb) AS k"
                    " WHERE r.workspace = k->>0 AND r.branch = k->>1 AND r.source_path = k->>2"
                ),
                (rows_json(replaced),),
            )
        if rows:
            # the other target column comes from FileIndex as the row goes in
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (self.tables.lock_key("resolve"),))
            conn.execute(
                q(
                    "INSERT INTO {file_reference} SELECT k.ws, k.branch, k.path, k.folder,"
                    " CASE WHEN k.pointer = 'filename' THEN k.filename ELSE fr.filename END,"
                    " CASE WHEN k.pointer = 'record_id' THEN k.rid ELSE ff.record_id END,"
                    " k.pointer FROM (SELECT e->>0 AS ws, e->>1 AS branch, e->>2 AS path,"
                    " e->>3 AS folder, e->>4 AS filename, e->>5 AS rid, e->>6 AS pointer"
                    " FROM jsonb_array_elements(%s::jsonb) AS e) AS k"
                    " LEFT JOIN {file_index} fr ON k.pointer = 'record_id' AND fr.workspace = k.ws"
                    "  AND fr.folder = k.folder AND fr.record_id = k.rid"
                    " LEFT JOIN {file_index} ff ON k.pointer = 'filename' AND ff.workspace = k.ws"
                    "  AND ff.folder = k.folder AND ff.filename = k.filename"
                ),
                (rows_json(rows),),
            )
