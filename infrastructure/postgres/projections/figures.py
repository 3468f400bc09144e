"""Figures for ``/metrics``, read from the projection tables at scrape time."""

from __future__ import annotations

from typing import LiteralString

from infrastructure.postgres.projections.views import PostgresViews


class OperationalFigures:
    """Counts by state and status, and how far each projection has got."""

    def __init__(self, views: PostgresViews) -> None:
        self._views = views

    def _pairs(self, template: LiteralString) -> dict[str, int]:
        with self._views.pool.connection() as conn:
            rows = conn.execute(self._views.tables.q(template)).fetchall()
        return {str(key): int(value) for key, value in rows}

    def pipeline_states(self) -> dict[str, int]:
        return self._pairs("SELECT state, count(*) FROM {pipeline_status} GROUP BY state")

    def entry_statuses(self) -> dict[str, int]:
        return self._pairs("SELECT status, count(*) FROM {pipeline_entries} GROUP BY status")

    def projection_positions(self) -> dict[str, int]:
        return self._pairs("SELECT name, position FROM {projection_tracking}")
