"""DraftFiles on PostgreSQL: a discarded draft goes as one statement, whatever its size."""

from __future__ import annotations

from collections.abc import Sequence

from application.projections.ports import DraftFileRow, DraftFilesWriter
from infrastructure.postgres.projections.parameters import rows_json
from infrastructure.postgres.projections.tables import Conn, ProjectionTables


class PostgresDraftFiles(DraftFilesWriter):
    def __init__(self, conn: Conn, tables: ProjectionTables) -> None:
        self.conn, self.tables = conn, tables

    def write(
        self,
        discarded: Sequence[tuple[str, str]],
        removed: Sequence[tuple[str, str, str]],
        rows: Sequence[DraftFileRow],
    ) -> None:
        q = self.tables.q
        if discarded:
            self.conn.execute(
                q(
                    "DELETE FROM {draft_files} d USING jsonb_array_elements(%s::jsonb) AS k"
                    ' WHERE d.workspace = k->>0 AND d."user" = k->>1'
                ),
                (rows_json(discarded),),
            )
        if removed:
            self.conn.execute(
                q(
                    "DELETE FROM {draft_files} d"
                    " USING jsonb_array_elements(%s::jsonb) AS k"
                    ' WHERE d.workspace = k->>0 AND d."user" = k->>1 AND d.path = k->>2'
                ),
                (rows_json(removed),),
            )
        if rows:
            self.conn.execute(
                q(
                    'INSERT INTO {draft_files} (workspace, "user", path, content)'
                    " SELECT k->>0, k->>1, k->>2, nullif(k->3, 'null')"
                    " FROM jsonb_array_elements(%s::jsonb) AS k"
                    ' ON CONFLICT (workspace, "user", path)'
                    " DO UPDATE SET content = excluded.content"
                ),
                (rows_json(rows),),
            )
