"""PullStatus on PostgreSQL: a batch's new pulls in one insert, its changes in one update.

A change's counts are added to the stored ones, or replace them when they are
the totals of ``PullCompleted`` (see ``application.projections.pull_status``).
"""

from __future__ import annotations

from collections.abc import Sequence

from application.projections.ports import PullStatusChange, PullStatusRow, PullStatusWriter
from infrastructure.postgres.projections.parameters import rows_json
from infrastructure.postgres.projections.tables import Conn, ProjectionTables


class PostgresPullStatus(PullStatusWriter):
    def __init__(self, conn: Conn, tables: ProjectionTables) -> None:
        self.conn, self.tables = conn, tables

    def write(self, rows: Sequence[PullStatusRow], changes: Sequence[PullStatusChange]) -> None:
        q = self.tables.q
        if rows:
            self.conn.execute(
                q(
                    "INSERT INTO {pull_status} SELECT k->>0, k->>1, k->2, k->>3, (k->>4)::int8,"
                    " (k->>5)::int8, (k->>6)::int8, (k->>7)::int8, k->>8, (k->>9)::timestamptz,"
                    " (k->>10)::timestamptz, (k->>11)::timestamptz"
                    " FROM jsonb_array_elements(%s::jsonb) AS k ON CONFLICT (pull_id) DO NOTHING"
                ),
                (rows_json(rows),),
            )
        if changes:
            self.conn.execute(
                q(
                    "UPDATE {pull_status} p SET state = COALESCE(c.state, p.state),"
                    " created = c.created + CASE WHEN c.totals THEN 0 ELSE p.created END,"
                    " updated = c.updated + CASE WHEN c.totals THEN 0 ELSE p.updated END,"
                    " unchanged = c.unchanged + CASE WHEN c.totals THEN 0 ELSE p.unchanged END,"
                    " deleted = c.deleted + CASE WHEN c.totals THEN 0 ELSE p.deleted END,"
                    " error = CASE WHEN c.set_error THEN c.error ELSE p.error END,"
                    " finished_at = CASE WHEN c.set_finished THEN c.finished_at"
                    "  ELSE p.finished_at END, updated_at = c.updated_at"
                    " FROM (SELECT k->>0 AS pull_id, k->>1 AS state, (k->2->>0)::int8 AS created,"
                    " (k->2->>1)::int8 AS updated, (k->2->>2)::int8 AS unchanged,"
                    " (k->2->>3)::int8 AS deleted, (k->>3)::bool AS totals,"
                    " (k->>4)::bool AS set_error, k->>5 AS error, (k->>6)::bool AS set_finished,"
                    " (k->>7)::timestamptz AS finished_at, (k->>8)::timestamptz AS updated_at"
                    " FROM jsonb_array_elements(%s::jsonb) AS k) AS c WHERE p.pull_id = c.pull_id"
                ),
                (rows_json(changes),),
            )
