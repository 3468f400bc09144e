"""API.md §9: liveness, for load balancers and process supervisors (no token needed)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from interfaces.http import models as m
from interfaces.http.parsing import reply
from interfaces.http.registry import Endpoint


async def healthz(request: Request) -> Response:
    return reply(m.Health(status="ok"))


ENDPOINTS = [
    Endpoint("GET", "/healthz", healthz, "Liveness", responses={200: m.Health}, auth=False),
]
