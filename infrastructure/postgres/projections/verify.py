"""Verify the projections: replay every one into shadow tables and compare them with the live.

``verify`` replays every projection from scratch into ``*_shadow`` tables up to
the live tracking positions and compares the two, table by table, in one
snapshot in which the live positions are still those targets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from psycopg import sql

from infrastructure.postgres.database import Database
from infrastructure.postgres.projections.batch import positions
from infrastructure.postgres.projections.rebuild import collector_paused, reset
from infrastructure.postgres.projections.registry import PROJECTIONS
from infrastructure.postgres.projections.runner import ProjectionRunner
from infrastructure.postgres.projections.tables import ALL_TABLES, TRACKING, Conn, ProjectionTables

SHADOW = "_shadow"


@dataclass
class TableDifference:
    only_live: int
    only_shadow: int
    samples: list[str] = field(default_factory=list)


@dataclass
class VerifyReport:
    positions: dict[str, int]
    differences: dict[str, TableDifference]

    @property
    def ok(self) -> bool:
        return not self.differences

    def to_json(self) -> str:
        return json.dumps(
            {
                "ok": self.ok,
                "positions": self.positions,
                "differences": {t: d.__dict__ for t, d in self.differences.items()},
            },
            indent=2,
        )


def verify(
    database: Database, schema: str, *, events_table: str | None = None, attempts: int = 5
) -> VerifyReport:
    """Rebuild everything into shadow tables and report how the live tables differ."""
    shadow = ProjectionRunner(database, schema, suffix=SHADOW, events_table=events_table)
    conn = shadow.connect()
    try:
        shadow_tables = shadow.tables
        live = ProjectionTables(schema, "", shadow_tables.events_table)
        live.create(conn)
        reset(conn, shadow_tables, list(PROJECTIONS))
        shadow.acquire(conn, wait=True)
        for _ in range(attempts):
            targets = positions(conn, live, list(PROJECTIONS))
            with collector_paused():
                while shadow.step(conn, targets):
                    pass
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                if positions(conn, live, list(PROJECTIONS)) == targets:
                    return VerifyReport(targets, compare(conn, live, shadow_tables))
        raise TimeoutError("the live projections kept moving; verify found no quiet moment")
    finally:
        conn.close()


def compare(
    conn: Conn, live: ProjectionTables, shadow: ProjectionTables
) -> dict[str, TableDifference]:
    differences: dict[str, TableDifference] = {}
    for table in ALL_TABLES:
        if table == TRACKING:
            continue
        a, b = live.table(table), shadow.table(table)
        only_live = sql.SQL("SELECT * FROM {} EXCEPT ALL SELECT * FROM {}").format(a, b)
        only_shadow = sql.SQL("SELECT * FROM {} EXCEPT ALL SELECT * FROM {}").format(b, a)
        counts = []
        samples: list[str] = []
        for query, label in ((only_live, "live"), (only_shadow, "shadow")):
            rows = conn.execute(
                sql.SQL("SELECT row_to_json(d)::text FROM ({}) d").format(query)
            ).fetchall()
            counts.append(len(rows))
            samples += [f"only {label}: {r[0]}" for r in rows[:3]]
        if counts[0] or counts[1]:
            differences[table] = TableDifference(counts[0], counts[1], samples)
    return differences
