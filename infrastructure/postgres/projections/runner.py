"""The projection runner: leader election, catch-up in pages, low-latency live tailing.

Any number of processes may run it. Each projection is processed by exactly one
of them at a time: the one holding its session advisory lock (``pg_try_advisory_lock``),
taken on the connection that also does the work and LISTENs. If that process
dies, its connection dies, the lock is released, and a standby takes over
within ``standby_interval`` from the committed tracking position.

While behind, the runner reads pages of ``page_size`` notifications and commits
one transaction per page; when it is at the head it waits on the events
table's NOTIFY channel, so an event is projected as soon as it commits.

Start it with ``publishd projections run``, or call
``run_projections(database, schema, stop_event)``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence

import psycopg
from psycopg import sql

from infrastructure.postgres.database import Database
from infrastructure.postgres.projections.batch import LeadershipLost, apply_batch, positions
from infrastructure.postgres.projections.context import ProjectionCaches
from infrastructure.postgres.projections.pages import PageReader, read_page
from infrastructure.postgres.projections.registry import PROJECTIONS
from infrastructure.postgres.projections.tables import Conn, ProjectionTables, find_events_table

log = logging.getLogger(__name__)

CATCH_UP_PAGE = 5000
RESET = "reset"
"""Payload on the events channel that makes leaders re-read their tracking."""
CONNECT_TIMEOUT = 10
"""Seconds a connection attempt may take (a host that does not answer at all)."""
MAX_RECONNECT_PAUSE = 5.0
"""Longest pause between two connection attempts while the database is away."""
ANALYZE_AFTER = 20
"""Full pages after which, once idle, the led tables are ANALYZEd."""


class ProjectionRunner:
    def __init__(
        self,
        database: Database,
        schema: str,
        names: Sequence[str] | None = None,
        *,
        suffix: str = "",
        events_table: str | None = None,
        page_size: int = CATCH_UP_PAGE,
        standby_interval: float = 1.0,
        page_reader: PageReader = read_page,
    ) -> None:
        self.database = database
        self.schema = schema
        self.names = list(names or PROJECTIONS)
        self.suffix = suffix
        self.events_table = events_table
        self.page_size = page_size
        self.standby_interval = standby_interval
        self.caches = ProjectionCaches()
        self.led: dict[str, int] = {}
        """Projections this runner leads -> their committed position."""
        self._tables: ProjectionTables | None = None
        self.batches = 0
        self.page_reader = page_reader
        """Where pages come from (``rebuild`` shares them between its groups)."""

    # --- connection, tables, leadership --------------------------------------
    def connect(self, stop: threading.Event | None = None) -> Conn:
        """Connect, create the tables, find the events table (waiting for it) and LISTEN."""
        while True:
            conn = self.database.connect(autocommit=True, connect_timeout=CONNECT_TIMEOUT)
            events_table = self.events_table or find_events_table(conn, self.schema)
            if events_table:
                break
            conn.close()
            if stop is not None and stop.wait(self.standby_interval):
                raise InterruptedError("stopped before the events table existed")
        tables = ProjectionTables(self.schema, self.suffix, events_table)
        try:
            tables.create(conn)
            # The views are caches of the event store and their tracking commits in
            # the same transaction, so a crash can only lose a suffix of batches,
            # consistently, to be replayed: no need to wait for the WAL flush.
            conn.execute("SET synchronous_commit = off")
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(events_table)))
        except BaseException:
            conn.close()  # a server still starting up: try again later, on a new connection
            raise
        self._tables = tables
        self.led.clear()
        self.caches.clear()
        return conn

    def acquire(self, conn: Conn, *, wait: bool = False) -> None:
        """Take the lock of every projection not led yet; load the positions of new ones."""
        tables = self.tables
        function = "pg_advisory_lock" if wait else "pg_try_advisory_lock"
        won = []
        for name in self.names:
            if name in self.led:
                continue
            query = sql.SQL("SELECT {}(%s)").format(sql.Identifier(function))
            row = conn.execute(query, (tables.lock_key(name),)).fetchone()
            if wait or (row is not None and row[0]):
                won.append(name)
        if won:
            self.led.update(positions(conn, tables, won))
            log.info("leading projections %s", won)

    def reload(self, conn: Conn) -> None:
        """Re-read where each led projection stands; forget caches if any moved under us.

        After a failed batch, or when ``rebuild`` has reset a projection this
        runner leads (it NOTIFYs ``reset`` on the events channel to say so).
        """
        if not self.led:
            return
        stored = positions(conn, self.tables, list(self.led))
        if stored != self.led:
            self.caches.clear()
            self.led.update(stored)

    @property
    def tables(self) -> ProjectionTables:
        """The tables found and created by the last ``connect``."""
        if self._tables is None:
            raise RuntimeError("connect() first")
        return self._tables

    # --- work ---------------------------------------------------------------
    def step(self, conn: Conn, targets: dict[str, int] | None = None) -> bool:
        """Process one page for each group of led projections at the same position.

        ``targets`` bounds each projection (rebuild and verify stop there).
        Returns whether anything moved.
        """
        groups: dict[int, list[str]] = {}
        for name, position in self.led.items():
            if targets is None or position < targets.get(name, 0):
                groups.setdefault(position, []).append(name)
        moved = False
        for position, names in sorted(groups.items()):
            stop = min(targets[n] for n in names) if targets is not None else None
            events, end = self.page_reader(conn, self.tables, position, self.page_size, names, stop)
            if end == position:
                continue
            apply_batch(conn, self.tables, self.caches, names, events, position, end)
            for name in names:
                self.led[name] = end
            moved = True
            if end - position < self.page_size:
                continue  # live work: a short page, the tables hardly grew
            self.batches += 1
            if self.batches & (self.batches - 1) == 0:
                # Tables grow from empty while catching up; plans chosen for an
                # empty table (full scans) get slower with every page unless the
                # statistics follow (FileIndex's two unique keys share a prefix: without
                # them the filename lookup walks the primary key's whole folder), so
                # refresh them at 1, 2, 4, 8, ... full pages.
                # Never for live batches: ANALYZE of big tables there is a stall.
                self.analyze(conn, rough=True)
        return moved

    def wait(self, conn: Conn, timeout: float) -> bool:
        """Sleep until the events channel says something; True if it said ``reset``."""
        return any(n.payload == RESET for n in conn.notifies(timeout=timeout, stop_after=1))

    def run(self, stop: threading.Event) -> None:
        """Lead what can be led, stand by for the rest, until ``stop`` is set.

        A lost connection gives every projection up (its locks went with the
        session); the runner reconnects with a pause that doubles up to
        ``MAX_RECONNECT_PAUSE`` while the database stays away, and resumes each
        projection from its committed tracking position: a batch is applied in
        the transaction that moves its position, so none is lost or applied twice.
        """
        pause = self.standby_interval
        while not stop.is_set():
            try:
                conn = self.connect(stop)
            except InterruptedError:
                return
            except psycopg.OperationalError as error:
                if pause == self.standby_interval:
                    log.warning("cannot connect (%s); retrying", error)
                stop.wait(pause)
                pause = min(pause * 2, MAX_RECONNECT_PAUSE)
                continue
            pause = self.standby_interval
            try:
                self._serve(conn, stop)
            except psycopg.OperationalError:
                log.exception("connection lost; every projection is given up")
                stop.wait(self.standby_interval)
            finally:
                conn.close()

    def _serve(self, conn: Conn, stop: threading.Event) -> None:
        next_try = next_check = 0.0
        analyzed = self.batches
        while not stop.is_set():
            now = time.monotonic()
            if len(self.led) < len(self.names) and now >= next_try:
                self.acquire(conn)
                next_try = now + self.standby_interval
            try:
                moved = self.step(conn)
            except (LeadershipLost, psycopg.Error) as error:
                if isinstance(error, psycopg.OperationalError):
                    raise
                log.warning("batch rolled back (%s); reloading positions", error)
                self.caches.clear()
                self.reload(conn)
                continue
            if not moved:
                # Only a catch-up of full pages grows the tables enough to matter;
                # a steady stream of live batches must not pay for ANALYZE stalls.
                if self.batches - analyzed >= ANALYZE_AFTER:
                    self.analyze(conn)
                    analyzed = self.batches
                if now >= next_check:
                    self.reload(conn)
                    next_check = now + self.standby_interval
                if self.wait(conn, 0.5):
                    self.reload(conn)

    def analyze(self, conn: Conn, *, rough: bool = False) -> None:
        """Refresh statistics after a long catch-up, before live work relies on index plans."""
        analyze(conn, self.tables, self.led, rough=rough)


def analyze(
    conn: Conn, tables: ProjectionTables, names: Iterable[str], *, rough: bool = False
) -> None:
    """ANALYZE the tables of the projections ``names``.

    ``rough``: while still catching up, a tenth of the usual sample does: the
    plans of the next pages need the tables' sizes and key spreads, not fine
    histograms (a full ANALYZE at every doubling was a tenth of a rebuild's
    server time).
    """
    if rough:
        conn.execute("SET default_statistics_target = 10")
    try:
        for name in names:
            for table in PROJECTIONS[name].tables:
                conn.execute(sql.SQL("ANALYZE {}").format(tables.table(table)))
    finally:
        if rough:
            conn.execute("RESET default_statistics_target")


def run_projections(
    database: Database,
    schema: str,
    stop_event: threading.Event,
    names: Sequence[str] | None = None,
    events_table: str | None = None,
) -> None:
    """Run (or stand by for) every projection until ``stop_event`` is set. Blocks."""
    ProjectionRunner(database, schema, names, events_table=events_table).run(stop_event)
