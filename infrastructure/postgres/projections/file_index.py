"""FileIndex on PostgreSQL: rows holding a touched key go, the batch's surviving rows go in.

Every writer runs on the runner's connection inside the batch's transaction
(rows as one JSON document per statement, see ``parameters``), so the view change
commits together with the tracking position. A filename paired with another
record id changes FileReference's derived columns, so those are re-derived here.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from application.projections.ports import FileIndexRow, FileIndexWriter, FileKey, SeenRow
from infrastructure.postgres.projections.file_reference import resolve_references
from infrastructure.postgres.projections.parameters import rows_json
from infrastructure.postgres.projections.tables import Conn, ProjectionTables


class PostgresFileIndex(FileIndexWriter):
    def __init__(self, conn: Conn, tables: ProjectionTables) -> None:
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
