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
from infrastructure.postgres.projection_store import columns, dumps
from infrastructure.postgres.projection_tables import ProjectionTables


class PostgresMainFiles(MainFilesWriter):
    def __init__(self, conn: Connection[Any], tables: ProjectionTables) -> None:
        self.conn, self.tables = conn, tables

    def write(self, removed: Sequence[tuple[str, str]], rows: Sequence[MainFileRow]) -> None:
        q = self.tables.q
        if removed:
            self.conn.execute(
                q(
                    "DELETE FROM {main_files} m USING unnest(%b::text[], %b::text[]) AS k(ws, path)"
                    " WHERE m.workspace = k.ws AND m.path = k.path"
                ),
                columns(removed, 2),
            )
        if rows:
            ws, paths, folders, rids, contents = columns(rows, 5)
            self.conn.execute(
                q(
                    "INSERT INTO {main_files} (workspace, path, folder, record_id, content)"
                    " SELECT ws, path, folder, rid, c::jsonb FROM unnest("
                    "%b::text[], %b::text[], %b::text[], %b::text[], %b::text[])"
                    " AS k(ws, path, folder, rid, c)"
                    " ON CONFLICT (workspace, path) DO UPDATE SET folder = excluded.folder,"
                    " record_id = excluded.record_id, content = excluded.content"
                ),
                (ws, paths, folders, rids, [dumps(c) for c in contents]),
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
                    "DELETE FROM {draft_files} d USING unnest(%b::text[], %b::text[]) AS k(ws, u)"
                    ' WHERE d.workspace = k.ws AND d."user" = k.u'
                ),
                columns(discarded, 2),
            )
        if removed:
            self.conn.execute(
                q(
                    "DELETE FROM {draft_files} d"
                    " USING unnest(%b::text[], %b::text[], %b::text[]) AS k(ws, u, path)"
                    ' WHERE d.workspace = k.ws AND d."user" = k.u AND d.path = k.path'
                ),
                columns(removed, 3),
            )
        if rows:
            ws, users, paths, contents = columns(rows, 4)
            self.conn.execute(
                q(
                    'INSERT INTO {draft_files} (workspace, "user", path, content)'
                    " SELECT ws, u, path, c::jsonb FROM unnest("
                    "%b::text[], %b::text[], %b::text[], %b::text[]) AS k(ws, u, path, c)"
                    ' ON CONFLICT (workspace, "user", path)'
                    " DO UPDATE SET content = excluded.content"
                ),
                (ws, users, paths, [dumps(c) for c in contents]),
            )
