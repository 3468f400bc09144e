"""One batch of projection work: project a page, commit the views with the tracking.

All the view changes and tracking positions of the projections that share a
page commit in ONE transaction (exactly once). The tracking update is guarded
by the position the batch started from, so a process that lost its
leadership, or a projection reset by ``rebuild`` under its feet, can never
commit a batch twice: the guard fails and it rolls back.
"""

from __future__ import annotations

from collections.abc import Sequence

from infrastructure.postgres.projections.context import PostgresContext, ProjectionCaches
from infrastructure.postgres.projections.pages import Page
from infrastructure.postgres.projections.registry import PROJECTIONS
from infrastructure.postgres.projections.tables import Conn, ProjectionTables


class LeadershipLost(Exception):
    """The tracking row moved under us: another runner, or a rebuild, owns it now."""


def apply_batch(
    conn: Conn,
    tables: ProjectionTables,
    caches: ProjectionCaches,
    names: Sequence[str],
    page: Page,
    start: int,
    end: int,
) -> None:
    """Project ``page`` for ``names`` (all at ``start``) and move them to ``end``, atomically."""
    try:
        # Pipeline mode: statements whose results nobody reads go out without
        # waiting for each other, so a live batch of one event costs about one
        # round trip plus the commit instead of one per statement.
        with conn.pipeline(), conn.transaction():
            ctx = PostgresContext(conn, tables, caches)
            for name in names:
                registered = PROJECTIONS[name]
                if page.get(name):
                    writer = registered.writer(conn, tables, caches)
                    registered.projection.apply(page[name], ctx, writer)
            ctx.flush()
            moved = conn.execute(
                tables.q(
                    "UPDATE {projection_tracking} SET position = %s"
                    " WHERE name = ANY(%s) AND position = %s RETURNING name"
                ),
                (end, list(names), start),
            ).fetchall()
            if len(moved) != len(names):
                raise LeadershipLost(f"tracking of {list(names)} is no longer at {start}")
            payload = ",".join(f"{name}:{end}" for name in names)
            conn.execute("SELECT pg_notify(%s, %s)", (tables.channel, payload))
    except BaseException:
        caches.clear()
        raise


def positions(conn: Conn, tables: ProjectionTables, names: Sequence[str]) -> dict[str, int]:
    """Tracking positions of ``names``, creating missing rows at 0."""
    conn.execute(
        tables.q(
            "INSERT INTO {projection_tracking} SELECT unnest(%s::text[]), 0 ON CONFLICT DO NOTHING"
        ),
        (list(names),),
    )
    rows = conn.execute(
        tables.q("SELECT name, position FROM {projection_tracking} WHERE name = ANY(%s)"),
        (list(names),),
    ).fetchall()
    return {str(name): int(position) for name, position in rows}


def max_notification_id(conn: Conn, tables: ProjectionTables) -> int:
    row = conn.execute(tables.q("SELECT max(notification_id) FROM {events}")).fetchone()
    return int(row[0]) if row and row[0] is not None else 0
