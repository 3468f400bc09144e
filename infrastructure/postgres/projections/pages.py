"""Pages of events, read and decoded once for every projection that reads them.

Several projections at the same position share a page: each event is decoded
once and routed to every projection that reads it; the name of an event is
taken from its topic in the database, and a state that no projection reads is
not even sent.

A rebuild replays its projection groups in parallel, from the same position
with the same page size, so their pages coincide. Decoding (msgspec) is
a fifth of the Python work, and it holds the GIL: decoding each page
once per group would undo most of what running the groups side by side gains.
So ``SharedPages`` hands its groups one page: the first group to ask for it
reads, decodes and routes it for all of them; the page is dropped once every
group still running has taken it. A group that runs ahead waits while
``depth`` pages are held, which bounds the memory.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

from application.projections.events import ProjectedEvent, decode
from infrastructure.postgres.projections.registry import PROJECTIONS
from infrastructure.postgres.projections.tables import Conn, ProjectionTables

Page = dict[str, list[ProjectedEvent]]
"""A page's events for each projection that reads them, in order."""


class PageReader(Protocol):
    """Where a runner's pages come from: ``read_page``, or a rebuild's ``SharedPages``."""

    def __call__(
        self,
        conn: Conn,
        tables: ProjectionTables,
        after: int,
        limit: int,
        names: Sequence[str],
        stop: int | None = None,
    ) -> tuple[Page, int]: ...


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
    page was relevant.
    """
    page: Page = {name: [] for name in names}
    readers: dict[str, list[list[ProjectedEvent]]] = {}
    for name in names:
        for read in PROJECTIONS[name].projection.events:
            readers.setdefault(read, []).append(page[name])
    with conn.cursor(binary=True) as cur:
        cur.execute(
            tables.q(
                # split_part(topic, '.', -1) is application.projections.events.event_name
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


Key = tuple[int, int, int | None]


class SharedPages:
    def __init__(self, names: Sequence[str], groups: int, depth: int = 3) -> None:
        self.names = list(names)
        """Every projection of every group: a page holds the events any of them reads."""
        self.depth = depth
        self.running = set(range(groups))
        self.pages: dict[Key, tuple[Page, int, set[int]]] = {}
        self.changed = threading.Condition()

    def reader(self, group: int) -> SharedPageReader:
        return SharedPageReader(self, group)

    def read(
        self,
        group: int,
        conn: Conn,
        tables: ProjectionTables,
        after: int,
        limit: int,
        stop: int | None,
    ) -> tuple[Page, int]:
        key = (after, limit, stop)
        with self.changed:
            # (bounded: a group whose pages no other group shares must not stall)
            self.changed.wait_for(
                lambda: key in self.pages or len(self.pages) < self.depth, timeout=10.0
            )
            if key not in self.pages:
                # Read while holding the lock: the other groups wait for this
                # page rather than decode it a second time.
                events, end = read_page(conn, tables, after, limit, self.names, stop)
                self.pages[key] = (events, end, set())
            events, end, taken = self.pages[key]
            taken.add(group)
            self._drop_taken()
            return events, end

    def leave(self, group: int) -> None:
        """``group`` reads no more pages (done, or not leading its projections)."""
        with self.changed:
            self.running.discard(group)
            self._drop_taken()

    def _drop_taken(self) -> None:
        for key in [k for k, (_, _, taken) in self.pages.items() if self.running <= taken]:
            del self.pages[key]
        self.changed.notify_all()


class SharedPageReader(PageReader):
    """One group's ``PageReader``, served from the shared pages."""

    def __init__(self, pages: SharedPages, group: int) -> None:
        self.pages, self.group = pages, group

    def __call__(
        self,
        conn: Conn,
        tables: ProjectionTables,
        after: int,
        limit: int,
        names: Sequence[str],
        stop: int | None = None,
    ) -> tuple[Page, int]:
        return self.pages.read(self.group, conn, tables, after, limit, stop)
