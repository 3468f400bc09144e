"""MainFiles on PostgreSQL: one upsert per file, its content kept as the JSON text recorded."""

from __future__ import annotations

from collections.abc import Sequence

from application.projections.ports import MainFileRow, MainFilesWriter
from infrastructure.postgres.projections.parameters import rows_json
from infrastructure.postgres.projections.tables import Conn, ProjectionTables


class PostgresMainFiles(MainFilesWriter):
    def __init__(self, conn: Conn, tables: ProjectionTables) -> None:
        self.conn, self.tables = conn, tables

    def write(self, removed: Sequence[tuple[str, str]], rows: Sequence[MainFileRow]) -> None:
        q = self.tables.q
        if removed:
            self.conn.execute(
                q(
                    "DELETE FROM {main_files} m USING jsonb_array_elements(%s::jsonb) AS k"
                    " WHERE m.workspace = k->>0 AND m.path = k->>1"
                ),
                (rows_json(removed),),
            )
        if rows:
            self.conn.execute(
                q(
                    "INSERT INTO {main_files} (workspace, path, folder, record_id, content)"
                    " SELECT k->>0, k->>1, k->>2, k->>3, k->4"
                    " FROM jsonb_array_elements(%s::jsonb) AS k"
                    " ON CONFLICT (workspace, path) DO UPDATE SET folder = excluded.folder,"
                    " record_id = excluded.record_id, content = excluded.content"
                ),
                (rows_json(rows),),
            )
