"""``GET /metrics``: Prometheus text, gathered at scrape time.

Pipeline and entry figures are read from the projections at scrape time, so
they are right however many processes share the database; connector latency
is a process-local histogram; projection lag and open streams are this
process's view.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from infrastructure.postgres.operations import OperationalFigures

if TYPE_CHECKING:
    from infrastructure.postgres.event_feed import EventFeed
    from interfaces.bootstrap import Runtime

CONNECTOR_LATENCY = Histogram(
    "publishd_connector_latency_seconds",
    "Latency of calls to the external content service",
    ["operation"],
    registry=None,
)


class _Figures(Collector):
    def __init__(self, runtime: Runtime, feed: EventFeed) -> None:
        self.runtime = runtime
        self.feed = feed
        self.figures = OperationalFigures(runtime.views)

    def collect(self) -> Iterator[Any]:
        states = GaugeMetricFamily("publishd_pipelines", "Pipelines by state", labels=["state"])
        for state, count in sorted(self.figures.pipeline_states().items()):
            states.add_metric([state], count)
        yield states
        entries = GaugeMetricFamily(
            "publishd_entries", "Pipeline entries by status", labels=["status"]
        )
        for status, count in sorted(self.figures.entry_statuses().items()):
            entries.add_metric([status], count)
        yield entries
        head = self.runtime.app.head()
        lag = GaugeMetricFamily(
            "publishd_projection_lag_events", "Events not yet projected", labels=["projection"]
        )
        for name, position in sorted(self.figures.projection_positions().items()):
            lag.add_metric([name], max(0, head - position))
        yield lag
        yield GaugeMetricFamily(
            "publishd_open_streams",
            "Open SSE/NDJSON streams in this process",
            value=self.feed.stats().subscribers,
        )


def metrics_endpoint(runtime: Runtime, feed: EventFeed) -> Callable[[Request], Awaitable[Response]]:
    registry = CollectorRegistry()
    registry.register(_Figures(runtime, feed))
    registry.register(CONNECTOR_LATENCY)

    async def metrics(request: Request) -> Response:
        services = request.app.state.services
        await services.guard(request, "admin", None)
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    return metrics
