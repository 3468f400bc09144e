"""The projections' tables: their names and DDL (which projection owns which: ``registry``).

Every name can carry a suffix, so ``verify`` rebuilds into ``*_shadow`` tables
with the very same DDL beside the live ones, in the same schema.
"""

from __future__ import annotations

import hashlib
from typing import Any, LiteralString

from psycopg import Connection, sql

Conn = Connection[Any]
"""What runners, rebuilds and verify work on (autocommit; a batch opens its transaction)."""

TRACKING = "projection_tracking"
SHARED = ("projection_workspaces", "projection_drafts")
"""Facts any projection may look up (an aggregate's workspace, a draft's user)."""
VIEW_TABLES = (
    "file_index",
    "file_reference",
    "file_reference_schemas",
    "main_files",
    "draft_files",
    "pipeline_status",
    "pipeline_errors",
    "pipeline_entries",
    "pull_status",
)
"""Each owned by one projection (see ``registry``)."""
ALL_TABLES = (TRACKING, *SHARED, *VIEW_TABLES)

_DDL: tuple[LiteralString, ...] = (
    "CREATE TABLE IF NOT EXISTS {projection_tracking} ("
    " name text PRIMARY KEY, position bigint NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {projection_workspaces} ("
    " originator_id uuid PRIMARY KEY, workspace text NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {projection_drafts} ("
    ' originator_id uuid PRIMARY KEY, workspace text NOT NULL, "user" text NOT NULL)',
    "CREATE TABLE IF NOT EXISTS {file_index} ("
    " workspace text NOT NULL, folder text NOT NULL, record_id text NOT NULL,"
    " filename text NOT NULL, last_seen_at timestamptz NOT NULL,"
    " PRIMARY KEY (workspace, folder, record_id), UNIQUE (workspace, folder, filename))",
    "CREATE TABLE IF NOT EXISTS {file_reference} ("
    " workspace text NOT NULL, branch text NOT NULL, source_path text NOT NULL,"
    " target_folder text NOT NULL, target_filename text, target_record_id text,"
    " pointer text NOT NULL)",
    "CREATE INDEX IF NOT EXISTS {file_reference_source_idx}"
    " ON {file_reference} (workspace, branch, source_path)",
    "CREATE INDEX IF NOT EXISTS {file_reference_filename_idx}"
    " ON {file_reference} (workspace, target_folder, target_filename)",
    "CREATE INDEX IF NOT EXISTS {file_reference_record_idx}"
    " ON {file_reference} (workspace, target_folder, target_record_id)",
    "CREATE TABLE IF NOT EXISTS {file_reference_schemas} ("
    " workspace text NOT NULL, folder text NOT NULL, schema jsonb NOT NULL,"
    " PRIMARY KEY (workspace, folder))",
    "CREATE TABLE IF NOT EXISTS {main_files} ("
    " workspace text NOT NULL, path text NOT NULL, folder text NOT NULL, record_id text,"
    " content jsonb NOT NULL, PRIMARY KEY (workspace, path))",
    "CREATE INDEX IF NOT EXISTS {main_files_folder_idx} ON {main_files} (workspace, folder)",
    "CREATE TABLE IF NOT EXISTS {draft_files} ("
    ' workspace text NOT NULL, "user" text NOT NULL, path text NOT NULL, content jsonb,'
    ' PRIMARY KEY (workspace, "user", path))',
    "CREATE TABLE IF NOT EXISTS {pipeline_status} ("
    ' pipeline_id text PRIMARY KEY, workspace text NOT NULL, "user" text NOT NULL,'
    " state text NOT NULL, phase text, phases text[] NOT NULL, counts int[] NOT NULL,"
    " error text, cancel_requested boolean NOT NULL, main_version bigint NOT NULL,"
    " draft_version bigint NOT NULL, created_at timestamptz NOT NULL,"
    " started_at timestamptz, finished_at timestamptz, updated_at timestamptz NOT NULL,"
    " trace_id text)",
    # Tables made before pipelines had a trace: add the column (old rows have none).
    "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_attribute"
    " WHERE attrelid = '{pipeline_status}'::regclass AND attname = 'trace_id'"
    " AND NOT attisdropped) THEN ALTER TABLE {pipeline_status} ADD COLUMN trace_id text;"
    " END IF; END $$",
    "CREATE INDEX IF NOT EXISTS {pipeline_status_ws_idx}"
    " ON {pipeline_status} (workspace, created_at DESC)",
    "CREATE INDEX IF NOT EXISTS {pipeline_status_created_idx}"
    " ON {pipeline_status} (created_at DESC, pipeline_id DESC)",
    "CREATE INDEX IF NOT EXISTS {pipeline_status_state_idx} ON {pipeline_status} (state)",
    "CREATE TABLE IF NOT EXISTS {pipeline_errors} ("
    " pipeline_id text NOT NULL, phase text NOT NULL, path text NOT NULL,"
    " status text NOT NULL, message text NOT NULL, code text, details jsonb,"
    " PRIMARY KEY (pipeline_id, phase, path))",
    # Tables made before errors had codes: add the columns, and give old rows the
    # code a rebuild gives them (application.projections.pipeline_status.error_code).
    # Only then: ALTER TABLE locks the table whole, and a process starting next to
    # running projections must not wait on them (or deadlock with them) for nothing.
    "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_attribute"
    " WHERE attrelid = '{pipeline_errors}'::regclass AND attname = 'code' AND NOT attisdropped)"
    " THEN ALTER TABLE {pipeline_errors} ADD COLUMN code text, ADD COLUMN details jsonb;"
    " UPDATE {pipeline_errors} SET code = CASE WHEN status = 'skipped'"
    " THEN 'skipped_dependency' ELSE 'rejected' END; END IF; END $$",
    "CREATE TABLE IF NOT EXISTS {pipeline_entries} ("
    " pipeline_id text NOT NULL, phase text NOT NULL, path text NOT NULL, seq bigint NOT NULL,"
    " status text NOT NULL, record_id text, error text,"
    " PRIMARY KEY (pipeline_id, phase, path))",
    "CREATE TABLE IF NOT EXISTS {pull_status} ("
    " pull_id text PRIMARY KEY, workspace text NOT NULL, scope jsonb NOT NULL,"
    " state text NOT NULL, created bigint NOT NULL, updated bigint NOT NULL,"
    " unchanged bigint NOT NULL, deleted bigint NOT NULL, error text,"
    " started_at timestamptz NOT NULL, finished_at timestamptz, updated_at timestamptz NOT NULL)",
    "CREATE INDEX IF NOT EXISTS {pull_status_ws_idx}"
    " ON {pull_status} (workspace, started_at DESC, pull_id DESC)",
    "CREATE INDEX IF NOT EXISTS {pull_status_running_idx}"
    " ON {pull_status} (started_at, pull_id) WHERE state = 'running'",
)

_INDEXES = (
    "file_reference_source_idx",
    "file_reference_filename_idx",
    "file_reference_record_idx",
    "main_files_folder_idx",
    "pipeline_status_ws_idx",
    "pipeline_status_created_idx",
    "pipeline_status_state_idx",
    "pull_status_ws_idx",
    "pull_status_running_idx",
)


class ProjectionTables:
    """Qualified names of one set of projection tables (live, or ``_shadow``)."""

    def __init__(self, schema: str, suffix: str = "", events_table: str = "") -> None:
        self.schema = schema
        self.suffix = suffix
        self.events_table = events_table
        self.names: dict[str, sql.Composable] = {
            name: sql.Identifier(schema, name + suffix) for name in ALL_TABLES
        }
        self.names.update({name: sql.Identifier(name + suffix) for name in _INDEXES})
        if events_table:
            self.names["events"] = sql.Identifier(schema, events_table)
        self._cache: dict[str, sql.Composed] = {}

    def q(self, template: LiteralString) -> sql.Composed:
        """A statement with ``{table}`` placeholders filled with this set's names."""
        found = self._cache.get(template)
        if found is None:
            found = self._cache[template] = sql.SQL(template).format(**self.names)
        return found

    def table(self, name: str) -> sql.Composable:
        return self.names[name]

    @property
    def channel(self) -> str:
        """Where runners announce ``name:position`` after each commit (for read-your-writes)."""
        return f"publishd_projections_{self.schema}{self.suffix}"[:63]

    def lock_key(self, name: str) -> int:
        """A stable 63-bit advisory lock key for ``name`` in this schema and suffix."""
        digest = hashlib.blake2b(f"{self.schema}:{self.suffix}:{name}".encode(), digest_size=8)
        return int.from_bytes(digest.digest(), "big") >> 1

    def create(self, conn: Connection[object]) -> None:
        """Create every table (idempotent); serialised, as concurrent CREATEs race."""
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (self.lock_key("ddl"),))
            for statement in _DDL:
                conn.execute(self.q(statement))

    def truncate(self, conn: Connection[object], tables: tuple[str, ...]) -> None:
        conn.execute(
            sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(self.names[t] for t in tables))
        )


def find_events_table(conn: Connection[object], schema: str) -> str | None:
    """The application's events table: the one table of the schema with event rows' columns."""
    rows = conn.execute(
        "SELECT table_name FROM information_schema.columns"
        " WHERE table_schema = %s AND column_name IN ('notification_id', 'originator_version',"
        " 'topic', 'state') GROUP BY table_name HAVING count(*) = 4 ORDER BY table_name",
        (schema,),
    ).fetchall()
    names = [str(r[0]) for r in rows]  # type: ignore[index]
    return names[0] if len(names) == 1 else None
