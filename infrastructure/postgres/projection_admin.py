"""Rebuild and verify the projections, and the ``projection_runner`` command line.

``rebuild`` resets a projection (its tables truncated, its tracking at 0) in one
transaction. A runner leading it elsewhere then fails its next tracking guard,
rolls back, re-reads the position and replays from the start; if nobody leads
it, ``rebuild`` replays it itself. Either way it returns once the projection
has reached the head that it saw when it started.

``verify`` replays every projection from scratch into ``*_shadow`` tables up to
the live tracking positions and compares the two, table by table, in one
snapshot in which the live positions are still those targets.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import psycopg

from infrastructure.postgres.database import Database, resolve
from infrastructure.postgres.projection_batches import (
    PROJECTIONS,
    Conn,
    max_notification_id,
    positions,
    projection_channel,
)
from infrastructure.postgres.projection_pages import PageReader, SharedPages
from infrastructure.postgres.projection_runner import (
    RESET,
    ProjectionRunner,
    analyze,
    run_projections,
)
from infrastructure.postgres.projection_tables import ALL_TABLES, OWNED, SHARED, ProjectionTables

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


def reset(conn: Conn, tables: ProjectionTables, names: Sequence[str]) -> None:
    """Truncate the projections' tables and put their tracking back to 0, atomically."""
    owned = tuple(t for n in names for t in OWNED[n])
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
    ("pipeline_status", "pipeline_entries"),
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
        tables = runner._tables()
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
        database, schema, names, events_table=events_table, page_size=REBUILD_PAGE
    )
    runner.read_page = read
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
    conn.execute(
        psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(projection_channel(tables)))
    )
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


def verify(
    database: Database, schema: str, *, events_table: str | None = None, attempts: int = 5
) -> VerifyReport:
    """Rebuild everything into shadow tables and report how the live tables differ."""
    shadow = ProjectionRunner(database, schema, suffix=SHADOW, events_table=events_table)
    conn = shadow.connect()
    try:
        live = ProjectionTables(schema, "", shadow._tables().events_table)
        live.create(conn)
        reset(conn, shadow._tables(), list(PROJECTIONS))
        shadow.acquire(conn, wait=True)
        for _ in range(attempts):
            targets = positions(conn, live, list(PROJECTIONS))
            with collector_paused():
                while shadow.step(conn, targets):
                    pass
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                if positions(conn, live, list(PROJECTIONS)) == targets:
                    return VerifyReport(targets, compare(conn, live, shadow._tables()))
        raise TimeoutError("the live projections kept moving; verify found no quiet moment")
    finally:
        conn.close()


def compare(
    conn: Conn, live: ProjectionTables, shadow: ProjectionTables
) -> dict[str, TableDifference]:
    differences: dict[str, TableDifference] = {}
    for table in ALL_TABLES:
        if table == "projection_tracking":
            continue
        a, b = live.table(table), shadow.table(table)
        sql = psycopg.sql.SQL
        only_live = sql("SELECT * FROM {} EXCEPT ALL SELECT * FROM {}").format(a, b)
        only_shadow = sql("SELECT * FROM {} EXCEPT ALL SELECT * FROM {}").format(b, a)
        counts = []
        samples: list[str] = []
        for query, label in ((only_live, "live"), (only_shadow, "shadow")):
            rows = conn.execute(
                sql("SELECT row_to_json(d)::text FROM ({}) d").format(query)
            ).fetchall()
            counts.append(len(rows))
            samples += [f"only {label}: {r[0]}" for r in rows[:3]]
        if counts[0] or counts[1]:
            differences[table] = TableDifference(counts[0], counts[1], samples)
    return differences


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m infrastructure.postgres.projection_runner run|rebuild [NAME]|verify``."""
    from infrastructure.settings import Settings

    parser = argparse.ArgumentParser(prog="projections")
    parser.add_argument("command", choices=["run", "rebuild", "verify"])
    parser.add_argument("name", nargs="?", default=None)
    parser.add_argument("--schema", default=None)
    parser.add_argument("--events-table", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings()
    database = resolve(settings.database_url, settings.data_dir)
    schema: str = args.schema or settings.db_schema
    if args.command == "run":
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        names = [args.name] if args.name else None
        run_projections(database, schema, stop, names=names, events_table=args.events_table)
    elif args.command == "rebuild":
        reached: Any = rebuild(database, schema, args.name, events_table=args.events_table)
        print(json.dumps({"rebuilt": reached}))
    else:
        report = verify(database, schema, events_table=args.events_table)
        print(report.to_json())
        sys.exit(0 if report.ok else 1)
