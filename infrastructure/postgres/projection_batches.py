"""One batch of projection work: read a page of events, project it, commit with tracking.

Several projections at the same position share a page: the rows are read and
decoded once, each projection takes the events it reads, and all their view
changes and tracking positions commit in ONE transaction (exactly once). The
tracking update is guarded by the position the batch started from, so a
process that lost its leadership, or a projection reset by ``rebuild`` under
its feet, can never commit a batch twice: the guard fails and it rolls back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from psycopg import Connection

from application.projections import (
    DraftFilesProjection,
    FileIndexProjection,
    FileReferenceProjection,
    MainFilesProjection,
    PipelineEntriesProjection,
    PipelineStatusProjection,
)
from application.projections.events import ProjectedEvent, decode
from application.projections.ports import Projection
from infrastructure.postgres.projection_store import (
    PostgresContext,
    PostgresFileIndex,
    PostgresFileReference,
    ProjectionCaches,
)
from infrastructure.postgres.projection_store_content import PostgresDraftFiles, PostgresMainFiles
from infrastructure.postgres.projection_store_pipelines import (
    PostgresPipelineEntries,
    PostgresPipelineStatus,
)
from infrastructure.postgres.projection_tables import ProjectionTables

Conn = Connection[Any]
WriterFactory = Callable[[Conn, ProjectionTables, ProjectionCaches], Any]

PROJECTIONS: dict[str, tuple[Projection[Any], WriterFactory]] = {
    FileIndexProjection.name: (FileIndexProjection(), lambda c, t, _: PostgresFileIndex(c, t)),
    FileReferenceProjection.name: (FileReferenceProjection(), PostgresFileReference),
    MainFilesProjection.name: (MainFilesProjection(), lambda c, t, _: PostgresMainFiles(c, t)),
    DraftFilesProjection.name: (DraftFilesProjection(), lambda c, t, _: PostgresDraftFiles(c, t)),
    PipelineStatusProjection.name: (
        PipelineStatusProjection(),
        lambda c, t, _: PostgresPipelineStatus(c, t),
    ),
    PipelineEntriesProjection.name: (
        PipelineEntriesProjection(),
        lambda c, t, _: PostgresPipelineEntries(c, t),
    ),
}


class LeadershipLost(Exception):
    """The tracking row moved under us: another runner, or a rebuild, owns it now."""


def projection_channel(tables: ProjectionTables) -> str:
    """Where a runner announces ``name:position`` after each commit (for read-your-writes)."""
    return f"publishd_projections_{tables.schema}{tables.suffix}"[:63]


Page = dict[str, list[ProjectedEvent]]
"""A page's events for each projection that reads them, in order."""


def read_page(
    conn: Conn,
    tables: ProjectionTables,
    after: int,
    limit: int,
    names: Sequence[str],
    stop: int | None = None,
) -> tuple[Page, int]:
    """Events after ``after`` (up to ``stop``), decoded only if a projection reads them.

    Returns the decoded events of each of ``names`` and the last notification
    id read, which is where the tracking moves to even when no event of the
    page was relevant. Each event is decoded once and routed to every
    projection that reads it.
    """
    page: Page = {name: [] for name in names}
    readers: dict[str, list[list[ProjectedEvent]]] = {}
    for name in names:
        for read in PROJECTIONS[name][0].events:
            readers.setdefault(read, []).append(page[name])
    with conn.cursor(binary=True) as cur:
        cur.execute(
            tables.q(
                "SELECT notification_id, originator_id::text, originator_version, name,"
                " CASE WHEN name = ANY(%s) THEN state END"
                " FROM (SELECT *, split_part(topic, '.', -1) AS name FROM {events}"
                "  WHERE notification_id > %s AND notification_id <= %s"
                "  ORDER BY notification_id LIMIT %s) AS page"
            ),
            (list(readers), after, stop if stop is not None else 2**62, limit),
        )
        rows = cur.fetchall()
    if not rows:
        return page, after
    for notification_id, originator_id, version, name, state in rows:
        if state is not None:
            event = decode(notification_id, originator_id, version, name, state)
            for events in readers[name]:
                events.append(event)
    return page, int(rows[-1][0])


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
                projection, make_writer = PROJECTIONS[name]
                if page.get(name):
                    projection.apply(page[name], ctx, make_writer(conn, tables, caches))
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
            conn.execute("SELECT pg_notify(%s, %s)", (projection_channel(tables), payload))
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
