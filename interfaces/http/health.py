"""API.md §9: liveness and readiness, for load balancers and process supervisors (no token).

``/healthz`` says the process serves; ``/readyz`` says it can do its work: the
database answers and the projections are within a few seconds of the head
(``infrastructure.postgres.readiness``). A process built without a readiness
check (tests of the HTTP layer alone) reports ready with nothing checked.
"""

from __future__ import annotations

from typing import Literal

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from domain.json_types import JsonObject
from interfaces.http import models as m
from interfaces.http.parsing import reply
from interfaces.http.registry import Endpoint
from interfaces.http.services import Services


class Readiness(m.ResponseBody):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str | int]


async def healthz(request: Request) -> Response:
    return reply(m.Health(status="ok"))


async def readyz(request: Request) -> Response:
    check = Services.of(request).readiness
    ready, checks = (True, {}) if check is None else await run_in_threadpool(check)
    body: JsonObject = {"status": "ok" if ready else "unavailable", "checks": checks}
    return reply(body, 200 if ready else 503)


ENDPOINTS = [
    Endpoint("GET", "/healthz", healthz, "Liveness", responses={200: m.Health}, auth=False),
    Endpoint(
        "GET",
        "/readyz",
        readyz,
        "Readiness: the database answers and the projections keep up",
        responses={200: Readiness, 503: Readiness},
        auth=False,
    ),
]
