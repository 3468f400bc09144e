"""Tables made by an earlier publishd gain this one's columns, with the values a rebuild gives."""

from __future__ import annotations

from infrastructure.postgres.database import Database
from infrastructure.postgres.projections.tables import ProjectionTables


def test_pipeline_errors_from_before_error_codes_get_their_codes(
    database: Database, schema: str
) -> None:
    tables = ProjectionTables(schema)
    with database.connect(autocommit=True) as conn:
        conn.execute(
            tables.q(
                "CREATE TABLE {pipeline_errors} (pipeline_id text NOT NULL, phase text NOT NULL,"
                " path text NOT NULL, status text NOT NULL, message text NOT NULL,"
                " PRIMARY KEY (pipeline_id, phase, path))"
            )
        )
        conn.execute(
            tables.q(
                "INSERT INTO {pipeline_errors} VALUES ('p', 'create', 'a.json', 'failed', '400'),"
                " ('p', 'backfill', 'a.json', 'skipped', 'depends on create:a.json')"
            )
        )
        tables.create(conn)
        rows = conn.execute(
            tables.q("SELECT phase, code, details FROM {pipeline_errors} ORDER BY phase")
        ).fetchall()
    assert rows == [("backfill", "skipped_dependency", None), ("create", "rejected", None)]
