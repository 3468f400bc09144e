"""``GET /metrics``: Prometheus text, gathered at scrape time.

Pipeline and entry figures are read from the projections at scrape time, so
they are right however many processes share the database; connector latency
is a process-local histogram; projection lag and open streams are this
process's view.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from infrastructure.connectors.retrying import CONNECTOR_REQUESTS
from infrastructure.postgres.projections.figures import OperationalFigures
from interfaces.http.registry import Handler, documented
from interfaces.http.services import Services
from interfaces.timed_connector import CONNECTOR_LATENCY

WEBHOOK_DELIVERIES = Counter(
    "publishd_webhook_deliveries",
    "Webhook delivery attempts made by this process, by outcome",
    ["outcome"],
    registry=None,
)
"""Process-local: ``delivered``, ``retried``, ``failed`` (given up) or ``refused`` (SSRF guard)."""


class _Figures(Collector):
    def __init__(
        self, figures: OperationalFigures, head: Callable[[], int], open_streams: Callable[[], int]
    ) -> None:
        self.figures = figures
        self.head = head
        self.open_streams = open_streams

    def collect(self) -> Iterator[Metric]:
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
        head = self.head()
        lag = GaugeMetricFamily(
            "publishd_projection_lag_events", "Events not yet projected", labels=["projection"]
        )
        for name, position in sorted(self.figures.projection_positions().items()):
            lag.add_metric([name], max(0, head - position))
        yield lag
        yield GaugeMetricFamily(
            "publishd_open_streams",
            "Open SSE/NDJSON streams in this process",
            value=self.open_streams(),
        )


def metrics_endpoint(
    figures: OperationalFigures, head: Callable[[], int], open_streams: Callable[[], int]
) -> Handler:
    """The handler, given what it reports: the projections' figures, the store's head, streams."""
    registry = CollectorRegistry()
    registry.register(_Figures(figures, head, open_streams))
    registry.register(CONNECTOR_LATENCY)
    registry.register(CONNECTOR_REQUESTS)
    registry.register(WEBHOOK_DELIVERIES)

    async def metrics(request: Request) -> Response:
        await Services.of(request).guard(request, "admin", None)
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    return metrics


DOCUMENTED = documented(
    "GET",
    "/metrics",
    "Prometheus metrics (admin)",
    "metrics",
    responses={200: None},
    media_types=("text/plain",),
)
"""The OpenAPI entry of ``metrics_endpoint``, listed only where the app serves it."""
