"""FileReference on PostgreSQL: pointers between files, each with both target columns.

A pointer names its target by filename or by record id; the other column is
derived from FileIndex, as the row goes in and again whenever FileIndex pairs a
filename with a record id differently (``resolve_references``). The two
projections may run in two processes, so both derivations take one
transaction-scoped advisory lock: the later one always sees the other's
committed rows (no write skew).
"""

from __future__ import annotations

from collections.abc import Sequence

from application.projections.ports import FileReferenceWriter, ReferenceRow, SourceKey
from domain.json_types import JsonObject
from infrastructure.postgres.projections.context import ProjectionCaches
from infrastructure.postgres.projections.parameters import rows_json
from infrastructure.postgres.projections.tables import Conn, ProjectionTables


def _lock_references(conn: Conn, tables: ProjectionTables) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (tables.lock_key("resolve"),))


def resolve_references(
    conn: Conn,
    tables: ProjectionTables,
    by_record: set[tuple[str, str, str]],
    by_filename: set[tuple[str, str, str]],
) -> None:
    """Re-derive the other target column of the pointers at these FileIndex keys."""
    if not by_record and not by_filename:
        return
    q = tables.q
    _lock_references(conn, tables)
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


class PostgresFileReference(FileReferenceWriter):
    def __init__(self, conn: Conn, tables: ProjectionTables, caches: ProjectionCaches) -> None:
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
            _lock_references(conn, self.tables)
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
