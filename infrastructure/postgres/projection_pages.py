"""Pages of events read and decoded once for groups of projections replaying side by side.

A rebuild replays its projection groups in parallel, from the same position
with the same page size, so their pages coincide. Decoding (msgspec) is
a fifth of the Python work, and it holds the GIL: decoding each page
once per group would undo most of what running the groups side by side gains.
The first group to ask for a page reads, decodes and routes it for all of them; the
page is dropped once every group still running has taken it. A group that
runs ahead waits while ``depth`` pages are held, which bounds the memory.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from infrastructure.postgres.projection_batches import Conn, Page, read_page
from infrastructure.postgres.projection_tables import ProjectionTables

Key = tuple[int, int, int | None]


class SharedPages:
    def __init__(self, names: Sequence[str], groups: int, depth: int = 3) -> None:
        self.names = list(names)
        """Every projection of every group: a page holds the events any of them reads."""
        self.depth = depth
        self.running = set(range(groups))
        self.pages: dict[Key, tuple[Page, int, set[int]]] = {}
        self.changed = threading.Condition()

    def reader(self, group: int) -> PageReader:
        return PageReader(self, group)

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


class PageReader:
    """``read_page`` for one group's runner, served from the shared pages."""

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
