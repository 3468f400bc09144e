"""Stream endpoints at the door: resume ids bounded before parsing, a cap of streams per token.

Finite streams (a finished pipeline, ``follow=false``) use Starlette's
TestClient; the cap needs streams that stay open, so those tests run a real
uvicorn server.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
from starlette.exceptions import StarletteDeprecationWarning

from infrastructure.postgres.database import Database
from interfaces.http.stream_limits import StreamLimits
from tests.api.stream_support import (
    EventStore,
    bearer,
    create_workspace,
    event_store,
    plan_pipeline,
    run_pipeline,
    streams_app,
)
from tests.support.servers import running_server

with warnings.catch_warnings():  # starlette asks for httpx2; httpx is what we have
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

pytestmark = pytest.mark.timeout(60)

TOO_LONG = ("1" * 4301, "9" * 5000, "1" * 21, "0" * 21, str(2**63), str(2**64))


@pytest.fixture
def store(database: Database, schema: str) -> Iterator[EventStore]:
    store = event_store(database, schema)
    create_workspace(store, "acme")
    yield store
    store.close()


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def refusal(client: httpx.Client, url: str, **options: Any) -> httpx.Response:
    """The answer to a stream request that should be refused; a stream that opens fails here.

    Streamed, so that a stream opened by mistake fails the test instead of hanging it.
    """
    with client.stream("GET", url, **options) as response:
        assert response.status_code != 200, "the stream opened"
        response.read()
        return response


def test_resume_ids_too_long_or_past_bigint_are_422_on_every_stream(
    database: Database, store: EventStore
) -> None:
    pipeline = plan_pipeline(store, "acme", entries=1)
    run_pipeline(store, pipeline)
    s = streams_app(database, store)
    with TestClient(s.app) as client:
        admin = bearer(s.tokens.create_token(None, [], admin=True))
        urls = (
            f"/pipelines/{pipeline.id}/events",
            "/workspaces/acme/events?follow=false",
            "/events?follow=false",
        )
        for url in urls:
            for bad in TOO_LONG:
                by_header = client.get(url, headers={**admin, "Last-Event-ID": bad})
                joiner = "&" if "?" in url else "?"
                by_query = client.get(f"{url}{joiner}after={bad}", headers=admin)
                for response in (by_header, by_query):
                    assert response.status_code == 422, (url, bad[:30], response.text[:200])
                    body = response.json()
                    assert body["error"] == "invalid_request"
                    assert "Last-Event-ID" in body["message"]
            # the largest id that fits is a resume point, not an error
            top = client.get(url, headers={**admin, "Last-Event-ID": str(2**63 - 1)})
            assert top.status_code == 200
            padded = client.get(url, headers={**admin, "Last-Event-ID": "0" * 19 + "1"})
            assert padded.status_code == 200


def test_a_token_holds_at_most_its_allowance_of_open_streams(
    database: Database, store: EventStore
) -> None:
    s = streams_app(database, store, ping_seconds=0.2, limits=StreamLimits(per_token=2))
    with running_server(s.app) as base, ExitStack() as stack:
        token = s.tokens.create_token("acme", ["read"])
        client = stack.enter_context(httpx.Client(base_url=base, timeout=10))
        url = "/workspaces/acme/events"
        held = [stack.enter_context(client.stream("GET", url, headers=bearer(token)))]
        held.append(
            stack.enter_context(
                client.stream(
                    "GET", url, headers={**bearer(token), "Accept": "application/x-ndjson"}
                )
            )
        )
        assert [r.status_code for r in held] == [200, 200]
        wait_until(lambda: s.feed.stats().subscribers == 2)

        refused = refusal(client, url, headers=bearer(token))
        assert refused.status_code == 429
        assert refused.json()["error"] == "rate_limited"
        assert "2 streams" in refused.json()["message"]
        assert int(refused.headers["Retry-After"]) > 0
        # the same token, spelt differently, is the same token
        respelt = refusal(client, url, headers={"Authorization": f"bearer   {token}"})
        assert respelt.status_code == 429
        assert s.feed.stats().subscribers == 2  # nothing was subscribed for the refused ones

        other = s.tokens.create_token("acme", ["read"])
        third = stack.enter_context(client.stream("GET", url, headers=bearer(other)))
        assert third.status_code == 200

        held[0].close()  # a stream that ends gives its slot back
        wait_until(lambda: s.feed.stats().subscribers == 2)
        again = stack.enter_context(client.stream("GET", url, headers=bearer(token)))
        assert again.status_code == 200


def test_streams_opened_with_tickets_count_against_the_tickets_grant(
    database: Database, store: EventStore
) -> None:
    s = streams_app(database, store, ping_seconds=0.2, limits=StreamLimits(per_token=1))
    with running_server(s.app) as base, ExitStack() as stack:
        token = bearer(s.tokens.create_token("acme", ["read"]))
        client = stack.enter_context(httpx.Client(base_url=base, timeout=10))

        def ticket() -> str:
            created = client.post("/stream-tickets", headers=token)
            assert created.status_code == 201, created.text
            value: str = created.json()["ticket"]
            return value

        url = "/workspaces/acme/events"
        first = stack.enter_context(client.stream("GET", url, params={"ticket": ticket()}))
        assert first.status_code == 200
        refused = refusal(client, url, params={"ticket": ticket()})
        assert refused.status_code == 429
        assert refused.json()["error"] == "rate_limited"
