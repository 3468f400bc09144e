"""Issue 13 defect 13a: ``PUBLISHD_RATE_LIMIT`` per token, on a real uvicorn over sockets."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from infrastructure.postgres.database import Database
from infrastructure.settings import Settings
from interfaces.bootstrap import Runtime, build_http_app
from tests.support.servers import running_server

pytestmark = pytest.mark.timeout(60)

BURST = 3


@dataclass
class Served:
    http: httpx.Client
    runtime: Runtime


@pytest.fixture
def served(database: Database, schema: str) -> Iterator[Served]:
    settings = Settings(
        database_url=database.conninfo, db_schema=schema, rate_limit=2.0, rate_limit_burst=BURST
    )
    runtime = Runtime.build(settings)
    try:
        app = build_http_app(runtime, with_worker=False, with_projections=False)
        with running_server(app) as url, httpx.Client(base_url=url, timeout=10) as http:
            yield Served(http, runtime)
    finally:
        runtime.close()


def get(served: Served, path: str, token: str | None = None) -> httpx.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return served.http.get(path, headers=headers)


def test_a_token_over_its_rate_gets_429_with_retry_after_and_healthz_never_does(
    served: Served,
) -> None:
    greedy = served.runtime.tokens.create_token(None, [], admin=True)
    calm = served.runtime.tokens.create_token(None, [], admin=True)

    assert [get(served, "/pipelines", greedy).status_code for _ in range(BURST)] == [200] * BURST
    refused = get(served, "/pipelines", greedy)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"] == "rate_limited" and refused.json()["message"]
    assert int(refused.headers["retry-after"]) >= 1

    assert get(served, "/pipelines", calm).status_code == 200, "the limit is per token"
    assert {get(served, "/healthz").status_code for _ in range(5 * BURST)} == {200}

    deadline = time.monotonic() + int(refused.headers["retry-after"]) + 5
    while (status := get(served, "/pipelines", greedy).status_code) == 429:
        assert time.monotonic() < deadline, "still limited well after Retry-After"
        time.sleep(0.1)  # (polling the condition, paced so as not to spend the refill)
    assert status == 200
