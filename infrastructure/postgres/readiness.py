"""API.md §9 ``/readyz``: the database answers and the projections keep up with the head.

"Keep up" is measured in time, not events: a busy store is always a few events
ahead of its projections. The projections are behind only when they have not
reached a head seen more than ``max_lag_seconds`` ago. Each check opens its own
short connection (bounded by the connect timeout) instead of waiting on a pool,
so a probe gets its answer quickly during an outage too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import psycopg
from psycopg import sql

from application.projections import PROJECTION_NAMES
from domain.json_types import JsonObject
from infrastructure.postgres.availability import Availability
from infrastructure.postgres.projections.tables import ProjectionTables


class Readiness:
    def __init__(
        self,
        conninfo: str,
        availability: Availability,
        *,
        schema: str,
        events_table: str,
        names: Sequence[str] = PROJECTION_NAMES,
        max_lag_seconds: float = 5.0,
        connect_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._conninfo = conninfo
        self._availability = availability
        tracking = ProjectionTables(schema).table("projection_tracking")
        self._query = sql.SQL(
            "SELECT (SELECT max(notification_id) FROM {events}),"
            " (SELECT coalesce(min(coalesce(t.position, 0)), 0)"
            " FROM unnest(%s::text[]) AS n(name) LEFT JOIN {tracking} t ON t.name = n.name)"
        ).format(events=sql.Identifier(schema, events_table), tracking=tracking)
        self._names = list(names)
        self._max_lag = max_lag_seconds
        self._connect_timeout = max(1, round(connect_timeout))
        self._clock = clock
        self._behind: tuple[int, float] | None = None
        """The head the projections were first seen short of, and when."""
        self._lock = threading.Lock()

    def check(self) -> tuple[bool, JsonObject]:
        """(ready, checks): ``checks`` says what was found, for the response body."""
        try:
            with psycopg.connect(
                self._conninfo, connect_timeout=self._connect_timeout, autocommit=True
            ) as conn:
                row = conn.execute(self._query, (self._names,)).fetchone()
        except psycopg.Error:
            self._availability.failed()
            return False, {"database": "unavailable", "projections": "unknown"}
        if self._availability.suspect:
            self._availability.probe()  # it answered us: let the pools through again
        head = int(row[0] or 0) if row else 0
        position = int(row[1] or 0) if row else 0
        keeping_up = self._keeping_up(head, position)
        checks: JsonObject = {
            "database": "ok",
            "projections": "ok" if keeping_up else "behind",
            "head": head,
            "projection_lag": max(0, head - position),
        }
        return keeping_up, checks

    def _keeping_up(self, head: int, position: int) -> bool:
        now = self._clock()
        with self._lock:
            if position >= head:
                self._behind = None
                return True
            if self._behind is None or position >= self._behind[0]:
                self._behind = (head, now)  # a new head to reach (the last one was reached)
            return now - self._behind[1] <= self._max_lag
