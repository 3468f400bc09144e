"""The Starlette application: each resource's endpoints, the streams, auth and limits.

Each resource module declares its endpoints next to its handlers; this module
only puts the tables together, so a route and its OpenAPI entry are written
once, where the handler is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from interfaces.http import (
    auth,
    drafts,
    health,
    index,
    metrics,
    pipelines,
    pulls,
    streams,
    webhooks,
    workspaces,
)
from interfaces.http.body_limit import BodyLimit
from interfaces.http.console import console_routes
from interfaces.http.docs import DOCUMENTED as DOCS_DOCUMENTED
from interfaces.http.docs import docs_routes
from interfaces.http.errors import install_error_handlers
from interfaces.http.registry import Endpoint, Handler, documented, openapi
from interfaces.http.request_log import RequestLog
from interfaces.http.services import Services

TITLE, VERSION = "publishd", "0.1.0"


def endpoints() -> list[Endpoint]:
    """Every command and query endpoint of API.md, routed from these declarations."""
    return [
        *health.ENDPOINTS,
        *workspaces.ENDPOINTS,
        *pulls.ENDPOINTS,
        *drafts.ENDPOINTS,
        *pipelines.ENDPOINTS,
        *index.ENDPOINTS,
        *webhooks.ENDPOINTS,
    ]


OPENAPI_DOCUMENTED = documented(
    "GET",
    "/openapi.json",
    "This document",
    "openapi_document",
    responses={200: None},
    auth=False,
    media_types=("application/json",),
)


def documented_elsewhere(*, with_metrics: bool) -> list[Endpoint]:
    """The routes built outside the endpoint tables (streams, tickets, metrics, the document)."""
    found = [*streams.DOCUMENTED, *auth.DOCUMENTED, OPENAPI_DOCUMENTED, DOCS_DOCUMENTED]
    return [*found, metrics.DOCUMENTED] if with_metrics else found


def create_app(
    services: Services,
    *,
    extra_routes: Sequence[BaseRoute] = (),
    metrics_handler: Handler | None = None,
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[None]] | None = None,
    max_request_bytes: int = 5 * 1024 * 1024,
    max_drain_bytes: int = 16 * 1024 * 1024,
    body_timeout: float = 30.0,
) -> ASGIApp:
    table = endpoints()
    document = openapi(
        [*table, *documented_elsewhere(with_metrics=metrics_handler is not None)], TITLE, VERSION
    )

    async def openapi_json(_: Request) -> Response:
        return JSONResponse(document)

    routes: list[BaseRoute] = [ep.route() for ep in table]
    routes.append(Route("/openapi.json", openapi_json, methods=["GET"]))
    routes.extend(docs_routes())
    if metrics_handler is not None:
        routes.append(Route("/metrics", metrics_handler, methods=["GET"]))
    routes.extend(extra_routes)
    routes.extend(console_routes())  # last: `/` and `/console/*` shadow nothing above
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.services = services
    install_error_handlers(app)
    limited = BodyLimit(
        app, max_request_bytes, drain_bytes=max_drain_bytes, read_timeout=body_timeout
    )
    return RequestLog(limited)
