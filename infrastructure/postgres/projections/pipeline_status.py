"""PipelineStatus on PostgreSQL: counts move by deltas, so a batch is one update per pipeline.

A retry takes back the counts of the errors it clears, which only the stored
errors can tell (see ``application.projections.pipeline_status``).
"""

from __future__ import annotations

from collections.abc import Sequence

from application.projections.pipeline_status import WIDTH, slot
from application.projections.ports import (
    ErrorRow,
    PipelineStatusWriter,
    StatusChange,
    StatusRow,
)
from infrastructure.postgres.projections.parameters import columns, rows_json
from infrastructure.postgres.projections.tables import Conn, ProjectionTables


class PostgresPipelineStatus(PipelineStatusWriter):
    def __init__(self, conn: Conn, tables: ProjectionTables) -> None:
        self.conn, self.tables = conn, tables

    def write(
        self,
        rows: Sequence[StatusRow],
        changes: Sequence[StatusChange],
        errors: Sequence[ErrorRow],
    ) -> None:
        q = self.tables.q
        with self.conn.cursor() as cur:
            if rows:
                cur.executemany(
                    q(
                        "INSERT INTO {pipeline_status} VALUES (%s, %s, %s, %s, %s, %s, %s, %s,"
                        " %s, %s, %s, %s::timestamptz, %s::timestamptz, %s::timestamptz,"
                        " %s::timestamptz, %s) ON CONFLICT (pipeline_id) DO NOTHING"
                    ),
                    rows,
                )
            if changes:
                cur.executemany(
                    q(
                        "UPDATE {pipeline_status} SET state = COALESCE(%(state)s, state),"
                        " phase = COALESCE(%(phase)s, phase),"
                        " error = CASE WHEN %(set_error)s THEN %(error)s ELSE error END,"
                        " finished_at = CASE WHEN %(set_finished_at)s"
                        "  THEN %(finished_at)s::timestamptz ELSE finished_at END,"
                        " cancel_requested = COALESCE(%(cancel_requested)s, cancel_requested),"
                        " started_at = COALESCE(started_at, %(started_at)s::timestamptz),"
                        " updated_at = %(updated_at)s::timestamptz,"
                        " counts = ARRAY(SELECT a + b FROM unnest(counts, %(counts_delta)s::int[])"
                        "  WITH ORDINALITY AS u(a, b, i) ORDER BY i)"
                        " WHERE pipeline_id = %(pipeline_id)s"
                    ),
                    [c._asdict() for c in changes],
                )
        if errors:
            self.conn.execute(
                q(
                    "INSERT INTO {pipeline_errors}"
                    " SELECT k->>0, k->>1, k->>2, k->>3, k->>4, k->>5, nullif(k->6, 'null')"
                    " FROM jsonb_array_elements(%s::jsonb) AS k"
                    " ON CONFLICT (pipeline_id, phase, path) DO UPDATE SET"
                    " status = excluded.status, message = excluded.message,"
                    " code = excluded.code, details = excluded.details"
                ),
                (rows_json(errors),),
            )

    def reset(self, pipeline_id: str, keys: Sequence[tuple[str, str]]) -> None:
        gone = self.conn.execute(
            self.tables.q(
                "DELETE FROM {pipeline_errors} e USING unnest(%b::text[], %b::text[])"
                " AS k(phase, path) WHERE e.pipeline_id = %b AND e.phase = k.phase"
                " AND e.path = k.path RETURNING e.phase, e.status"
            ),
            (*columns(keys, 2), pipeline_id),
        ).fetchall()
        if gone:
            delta = [0] * WIDTH
            for phase, status in gone:
                delta[slot(phase, status)] -= 1
            self.conn.execute(
                self.tables.q(
                    "UPDATE {pipeline_status} SET counts = ARRAY(SELECT a + b FROM"
                    " unnest(counts, %s::int[]) WITH ORDINALITY AS u(a, b, i) ORDER BY i)"
                    " WHERE pipeline_id = %s"
                ),
                (delta, pipeline_id),
            )
