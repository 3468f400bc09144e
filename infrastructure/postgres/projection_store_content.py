"""PostgreSQL writers of MainFiles and DraftFiles (see ``projection_store`` for the method)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import Connection

from application.projections.ports import (
    DraftFileRow,
    DraftFilesWriter,
    MainFileRow,
    MainFilesWriter,
)
from infrastructure.postgres.projection_store import rows_json
from infrastructure.postgres.projection_tables import ProjectionTables


class PostgresMainFiles(MainFilesWriter):
    def __init__(self, conn: Connection[Any], tables: ProjectionTables) -> None:
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


class PostgresDraftFiles(DraftFilesWriter):
    def __init__(self, conn: Connection[Any], tables: ProjectionTables) -> None:
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
