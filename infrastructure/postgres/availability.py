"""Whether the database answers, so that an outage costs each caller milliseconds, not minutes.

While PostgreSQL is unreachable a pool waits its whole timeout for a
connection that never comes, and eventsourcing's recorders retry each read and
write ten times: a request would hang for most of a minute before failing. One
``Availability`` per process and server short-circuits that: the first caller
that fails to get a connection marks the database *suspect*; from then on every
guarded pool refuses at once with ``DatabaseUnavailable`` (an
``OperationalError``, so every retry and reconnect loop treats it as the outage
it is), and at most one caller every ``probe_interval`` opens a fresh
connection to see whether the server is back. The first probe that succeeds
lets everyone through again; the pools themselves reconnect in the background.

psycopg_pool retries a lost connection with a backoff that doubles for up to
five minutes: after a one-minute outage a pool would stay empty for most of
another minute. Guarded pools give such an attempt up after
``RECONNECT_TIMEOUT`` instead; the next request then connects at once.

The HTTP error table maps ``UNAVAILABLE_ERRORS`` to 503 ``unavailable``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from eventsourcing import persistence
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool

log = logging.getLogger(__name__)


RECONNECT_TIMEOUT = 5.0
"""Seconds a pool keeps retrying one lost connection before leaving it to the next request."""


class DatabaseUnavailable(psycopg.OperationalError):
    """The database did not answer a moment ago; refused without trying again yet."""


UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    psycopg.OperationalError,  # also the pools' PoolTimeout and DatabaseUnavailable
    psycopg.InterfaceError,
    persistence.OperationalError,  # what eventsourcing's recorders make of the above
    persistence.InterfaceError,
)
"""Errors that mean "the database is unreachable (or too slow to answer) right now"."""


class Availability:
    """A circuit breaker for one server, shared by the pools of a process."""

    def __init__(
        self,
        conninfo: str,
        *,
        connect_timeout: float = 5.0,
        probe_interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._conninfo = conninfo
        self._connect_timeout = max(1, round(connect_timeout))  # libpq: whole seconds
        self._probe_interval = probe_interval
        self._clock = clock
        self._suspect = False
        self._probed_at = float("-inf")
        self._probing = threading.Lock()

    @property
    def suspect(self) -> bool:
        """Whether the last thing seen of the database was a failure."""
        return self._suspect

    def failed(self) -> None:
        """A caller could not reach the database: refuse others until a probe succeeds."""
        if not self._suspect:
            log.warning("the database is unreachable; refusing requests until it answers")
        self._suspect = True
        self._probed_at = self._clock()

    def check(self) -> None:
        """Return if the database may be used now; else raise ``DatabaseUnavailable`` at once."""
        if not self._suspect:
            return
        due = self._clock() - self._probed_at >= self._probe_interval
        if due and self._probing.acquire(blocking=False):
            try:
                if self._suspect and self._clock() - self._probed_at >= self._probe_interval:
                    self.probe()
            finally:
                self._probing.release()
        if self._suspect:
            raise DatabaseUnavailable("the database is unreachable")

    def probe(self) -> bool:
        """Open a fresh connection and ask the server something; record and return the answer."""
        try:
            with psycopg.connect(
                self._conninfo, connect_timeout=self._connect_timeout, autocommit=True
            ) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            self._probed_at = self._clock()
            if not self._suspect:
                self.failed()
            return False
        if self._suspect:
            log.warning("the database answers again")
        self._suspect = False
        return True

    def guard(self, pool: ConnectionPool[Any]) -> None:
        """Make ``pool`` refuse at once while the database is suspect, and report failures.

        The pool's own ``getconn`` is wrapped on the instance, so a pool built
        by a library (eventsourcing's datastore) is guarded the same way as ours.
        """
        getconn = pool.getconn
        pool.reconnect_timeout = min(pool.reconnect_timeout, RECONNECT_TIMEOUT)

        def guarded_getconn(timeout: float | None = None) -> Any:
            self.check()
            try:
                return getconn(timeout)
            except psycopg.OperationalError:
                self.failed()
                raise

        pool.getconn = guarded_getconn  # type: ignore[method-assign]


def guarded_pool(
    conninfo: str,
    availability: Availability | None,
    *,
    max_size: int,
    timeout: float,
    open: bool,
) -> ConnectionPool[psycopg.Connection[TupleRow]]:
    """An autocommit pool that checks each connection before lending it and waits ``timeout``.

    The check (an empty query) finds the connections a restarted server cut
    off, so the first request after an outage is not answered with a dead one.
    """
    pool: ConnectionPool[psycopg.Connection[TupleRow]] = ConnectionPool(
        conninfo,
        min_size=1,
        max_size=max_size,
        kwargs={"autocommit": True, "connect_timeout": max(1, round(timeout))},
        timeout=timeout,
        check=ConnectionPool.check_connection,
        reconnect_timeout=RECONNECT_TIMEOUT,
        open=False,
    )
    if availability is not None:
        availability.guard(pool)
    if open:
        pool.open()
    return pool
