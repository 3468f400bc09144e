"""Rebuild a projection (or all): reset its tables, replay it to the head seen at the start.

``rebuild`` resets a projection (its tables truncated, its tracking at 0) in one
transaction. A runner leading it elsewhere then fails its next tracking guard,
rolls back, re-reads the position and replays from the start; if nobody leads
it, ``rebuild`` replays it itself. Either way it returns once the projection
has reached the head that it saw when it started.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial

from psycopg import sql

from infrastructure.postgres.database import Database
from infrastructure.postgres.projections.batch import max_notification_id, positions
from infrastructure.postgres.projections.pages import PageReader, SharedPages
from infrastructure.postgres.projections.registry import PROJECTIONS
from infrastructure.postgres.projections.runner import RESET, ProjectionRunner, analyze
from infrastructure.postgres.projections.tables import SHARED, Conn, ProjectionTables


def reset(conn: Conn, tables: ProjectionTables, names: Sequence[str]) -> None:
    """Truncate the projections' tables and put their tracking back to 0, atomically."""
    owned = tuple(t for n in names for t in PROJECTIONS[n].tables)
    with conn.transaction():
        if set(names) == set(PROJECTIONS):
            owned += SHARED
        tables.truncate(conn, owned)
        positions(conn, tables, names)
        conn.execute(
            tables.q("UPDATE {projection_tracking} SET position = 0 WHERE name = ANY(%s)"),
            (list(names),),
        )
        conn.execute("SELECT pg_notify(%s, %s)", (tables.events_table, RESET))


REBUILD_GROUPS: tuple[tuple[str, ...], ...] = (
    ("file_index", "file_reference"),
    ("main_files", "draft_files"),
    ("pipeline_status", "pipeline_entries", "pull_status"),
)
"""Projections replayed together on one connection; the groups run side by side.

While one group waits for the server, another projects in Python, so the
rebuild uses both the client's and the server's CPU. FileIndex and
FileReference share a group: both take the ``resolve`` lock in every batch.
"""
REBUILD_PAGE = 100000
"""Bigger pages than live catch-up: a page's writes are coalesced per key first, so
a file changed in many events of one page is written once. In the rebuild bench
(501,467 events), 100,000 events a page took 6.2-6.7 s against 7.9-8.0 s with
50,000 and 10 s with 25,000; 170,000 or 250,000 gained nothing more. The peak
is about 1 GB in all (two pages held, see ``SharedPages``; contents stay JSON
text, see ``events``)."""


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a replay.

    A replay makes millions of acyclic objects (decoded events, rows) while
    whole pages of them stay alive; every collection rescans those, and that
    was about 40% of a rebuild's time. Reference counting still frees them
    all; whatever cycles appear meanwhile are collected once at the end.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
            gc.collect()


def rebuild(
    database: Database,
    schema: str,
    name: str | None = None,
    *,
    events_table: str | None = None,
    timeout: float = 3600.0,
) -> dict[str, int]:
    """Drop and replay one projection (or all); returns the positions reached."""
    names = [name] if name else list(PROJECTIONS)
    unknown = set(names) - set(PROJECTIONS)
    if unknown:
        raise ValueError(f"unknown projection {sorted(unknown)}; known: {sorted(PROJECTIONS)}")
    runner = ProjectionRunner(database, schema, names, events_table=events_table)
    conn = runner.connect()
    try:
        tables = runner.tables
        reset(conn, tables, names)
        target = max_notification_id(conn, tables)
        groups = [g for g in ([n for n in group if n in names] for group in REBUILD_GROUPS) if g]
        pages = SharedPages(names, len(groups), depth=2)
        failures: list[BaseException] = []
        analyzed: set[str] = set()
        threads = [
            threading.Thread(
                target=_replay,
                args=(database, schema, group, tables.events_table, target, failures, analyzed),
                kwargs={"read": pages.reader(index), "leave": partial(pages.leave, index)},
                name=f"rebuild-{group[0]}",
            )
            for index, group in enumerate(groups)
        ]
        with collector_paused():
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        if failures:
            raise failures[0]
        reached = wait_for(conn, tables, names, target, timeout)
        # (what a runner elsewhere replayed: see ``_replay``)
        analyze(conn, tables, [n for n in names if n not in analyzed])
        return reached
    finally:
        conn.close()


def _replay(
    database: Database,
    schema: str,
    names: Sequence[str],
    events_table: str,
    target: int,
    failures: list[BaseException],
    analyzed: set[str],
    *,
    read: PageReader,
    leave: Callable[[], None],
) -> None:
    """Replay ``names`` up to ``target`` if this process can lead them (else a runner does).

    Then ANALYZE the tables replayed here (added to ``analyzed``), while the
    other groups still replay: freshly bulk-loaded tables have no statistics
    yet, and without them the planner scans whole tables for the small keyed
    batches of live work.
    """
    runner = ProjectionRunner(
        database, schema, names, events_table=events_table, page_size=REBUILD_PAGE, page_reader=read
    )
    try:
        with runner.connect() as conn:
            runner.acquire(conn)
            while runner.step(conn, {n: target for n in names}):
                pass
            leave()
            runner.analyze(conn)
            analyzed.update(runner.led)
    except BaseException as error:  # reported by ``rebuild`` in the calling thread
        failures.append(error)
    finally:
        leave()


def wait_for(
    conn: Conn, tables: ProjectionTables, names: Sequence[str], target: int, timeout: float
) -> dict[str, int]:
    """Wait (on the projection channel) until every one of ``names`` is at ``target``."""
    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(tables.channel)))
    deadline = time.monotonic() + timeout
    while True:
        reached = positions(conn, tables, names)
        if all(p >= target for p in reached.values()):
            return reached
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"projections at {reached}, waiting for {target}")
        for _ in conn.notifies(timeout=min(left, 1.0), stop_after=1):
            pass
