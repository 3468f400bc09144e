"""The error table: whatever form "the database is unreachable" takes, it is a 503, not a 500.

psycopg's errors, the pools' timeout, eventsourcing's wrappers of them, the
circuit breaker's refusal and a read-your-writes wait that timed out each reach
the client as 503 ``unavailable`` with ``Retry-After``, and the message names no
server (its socket path or host stays in the log).
"""

from __future__ import annotations

import asyncio

import httpx
import psycopg
import pytest
from eventsourcing import persistence
from psycopg_pool import PoolTimeout
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from infrastructure.postgres.availability import DatabaseUnavailable
from interfaces.http.errors import install_error_handlers

SECRET_PLACE = "/tmp/secret-socket-dir/.s.PGSQL.5432"

RAISED: dict[str, Exception] = {
    "psycopg": psycopg.OperationalError(f'connection to server on socket "{SECRET_PLACE}" failed'),
    "interface": psycopg.InterfaceError("the connection is closed"),
    "pool": PoolTimeout("couldn't get a connection after 5.00 sec"),
    "eventsourcing": persistence.OperationalError(f"server at {SECRET_PLACE} closed"),
    "eventsourcing-interface": persistence.InterfaceError("connection already closed"),
    "breaker": DatabaseUnavailable("the database is unreachable"),
    "read-your-writes": TimeoutError("projections did not reach position 12 in time"),
}


async def raiser(request: Request) -> Response:
    raise RAISED[request.path_params["kind"]]


def get(path: str) -> httpx.Response:
    app = Starlette(routes=[Route("/raise/{kind}", raiser)])
    install_error_handlers(app)

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get(path)

    return asyncio.run(go())


@pytest.mark.parametrize("kind", sorted(RAISED))
def test_unreachable_database_is_503_unavailable(kind: str) -> None:
    response = get(f"/raise/{kind}")
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"] == "unavailable"
    assert body["message"] and SECRET_PLACE not in response.text
    assert set(body) <= {"error", "message", "details"}
    assert int(response.headers["Retry-After"]) >= 1


def test_other_errors_are_still_500() -> None:
    RAISED["other"] = RuntimeError("a bug")
    try:
        assert get("/raise/other").status_code == 500
    finally:
        del RAISED["other"]
