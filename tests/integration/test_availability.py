"""The database's circuit breaker and ``/readyz``'s check, against real servers.

A "dead" server is a local port nobody listens on: connections are refused at
once, as when PostgreSQL is stopped.
"""

from __future__ import annotations

import socket
import time

import psycopg
import pytest
from psycopg_pool import PoolTimeout

from application.projections import PROJECTION_NAMES
from infrastructure.postgres.availability import Availability, DatabaseUnavailable, guarded_pool
from infrastructure.postgres.database import Database
from infrastructure.postgres.readiness import Readiness
from infrastructure.settings import Settings
from tests.support.publishing import projecting_runtime

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def dead() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql://postgres@127.0.0.1:{port}/nothing"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_after_one_timeout_a_dead_database_is_refused_at_once(dead: str) -> None:
    availability = Availability(dead, connect_timeout=1)
    pool = guarded_pool(dead, availability, max_size=2, timeout=1.0, open=True)
    try:
        started = time.monotonic()
        with pytest.raises(PoolTimeout), pool.connection():
            pass
        assert availability.suspect
        assert 0.9 < time.monotonic() - started < 3
        for _ in range(20):  # each within the probe interval, or a probe refused at once
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailable), pool.connection():
                pass
            assert time.monotonic() - started < 0.5
    finally:
        pool.close()


def test_a_suspect_database_is_probed_at_most_once_an_interval_and_let_through_when_it_answers(
    database: Database,
) -> None:
    clock = Clock()
    availability = Availability(database.conninfo, probe_interval=0.5, clock=clock)
    pool = guarded_pool(database.conninfo, availability, max_size=2, timeout=5.0, open=True)
    try:
        availability.failed()
        clock.now += 0.1
        with pytest.raises(DatabaseUnavailable), pool.connection():
            pass  # not probed yet, although the server answers
        clock.now += 0.5
        with pool.connection() as conn:  # probed: it answers
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert not availability.suspect
    finally:
        pool.close()


def test_unavailable_is_an_operational_error_for_every_retry_loop() -> None:
    assert issubclass(DatabaseUnavailable, psycopg.OperationalError)
    assert issubclass(PoolTimeout, psycopg.OperationalError)


def test_readiness_waits_a_few_seconds_for_projections_then_says_behind(
    database: Database, schema: str, dead: str
) -> None:
    settings = Settings(database_url=database.conninfo, db_schema=schema)
    with projecting_runtime(settings) as runtime:
        runtime.app.create_workspace("acme", {"type": "sandbox", "base_url": "http://x/"})
        runtime.app.catch_up()
        clock = Clock()

        def readiness(conninfo: str, names: tuple[str, ...] = PROJECTION_NAMES) -> Readiness:
            return Readiness(
                conninfo,
                Availability(conninfo),
                schema=schema,
                events_table=runtime.events_table,
                names=names,
                max_lag_seconds=5.0,
                clock=clock,
            )

        ready, checks = readiness(database.conninfo).check()
        assert ready and checks["database"] == "ok" and checks["projections"] == "ok"
        assert checks["projection_lag"] == 0 and int(checks["head"]) > 0

        never = readiness(database.conninfo, ("a_projection_that_never_runs",))
        assert never.check()[0]  # just seen behind: give it a few seconds
        clock.now += 4
        assert never.check()[0]
        clock.now += 2
        ready, checks = never.check()
        assert not ready and checks["projections"] == "behind"

        ready, checks = readiness(dead).check()
        assert not ready and checks["database"] == "unavailable"
