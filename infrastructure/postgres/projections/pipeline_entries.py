"""PipelineEntries on PostgreSQL: a plan's entries and a round's outcomes, one statement each.

A retry puts only the failed and skipped entries back to planned: the table
knows which those are, the events of the retry do not name them.
"""

from __future__ import annotations

from collections.abc import Sequence

from application.projections.ports import EntryRow, EntryUpdate, PipelineEntriesWriter
from infrastructure.postgres.projections.parameters import columns, rows_json
from infrastructure.postgres.projections.tables import Conn, ProjectionTables


class PostgresPipelineEntries(PipelineEntriesWriter):
    def __init__(self, conn: Conn, tables: ProjectionTables) -> None:
        self.conn, self.tables = conn, tables

    def write(self, rows: Sequence[EntryRow], updates: Sequence[EntryUpdate]) -> None:
        q = self.tables.q
        if rows:
            self.conn.execute(
                q(
                    "INSERT INTO {pipeline_entries} SELECT k->>0, k->>1, k->>2, (k->>3)::int8,"
                    " k->>4, k->>5, k->>6 FROM jsonb_array_elements(%s::jsonb) AS k"
                    " ON CONFLICT (pipeline_id, phase, path) DO UPDATE SET seq = excluded.seq,"
                    " status = excluded.status, record_id = excluded.record_id,"
                    " error = excluded.error"
                ),
                (rows_json(rows),),
            )
        if updates:
            self.conn.execute(
                q(
                    "UPDATE {pipeline_entries} e SET status = u.status, error = u.error,"
                    " record_id = CASE WHEN u.set_rid THEN u.rid ELSE e.record_id END"
                    " FROM (SELECT k->>0 AS pid, k->>1 AS phase, k->>2 AS path, k->>3 AS status,"
                    " k->>4 AS rid, (k->>5)::bool AS set_rid, k->>6 AS error"
                    " FROM jsonb_array_elements(%s::jsonb) AS k) AS u"
                    " WHERE e.pipeline_id = u.pid AND e.phase = u.phase AND e.path = u.path"
                ),
                (rows_json(updates),),
            )

    def reset(self, pipeline_id: str, keys: Sequence[tuple[str, str]]) -> None:
        self.conn.execute(
            self.tables.q(
                "UPDATE {pipeline_entries} e SET status = 'planned', error = NULL"
                " FROM unnest(%b::text[], %b::text[]) AS k(phase, path)"
                " WHERE e.pipeline_id = %b AND e.phase = k.phase AND e.path = k.path"
                " AND e.status IN ('failed', 'skipped')"
            ),
            (*columns(keys, 2), pipeline_id),
        )
