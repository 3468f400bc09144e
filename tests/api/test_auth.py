"""Tokens, scopes, tenancy and stream tickets, through the stream endpoints."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator

import pytest
from psycopg import sql
from starlette.exceptions import StarletteDeprecationWarning

from infrastructure.postgres.database import Database
from infrastructure.postgres.tokens import TokenStore, token_hash
from tests.api.stream_support import (
    EventStore,
    StreamsApp,
    bearer,
    create_workspace,
    event_store,
    parse_sse,
    plan_pipeline,
    run_pipeline,
    streams_app,
)

with warnings.catch_warnings():  # starlette asks for httpx2; httpx is what we have
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient


@pytest.fixture
def store(database: Database, schema: str) -> Iterator[EventStore]:
    store = event_store(database, schema)
    create_workspace(store, "acme")
    create_workspace(store, "other")
    yield store
    store.close()


@pytest.fixture
def served(database: Database, store: EventStore) -> Iterator[tuple[StreamsApp, TestClient, str]]:
    pipeline = plan_pipeline(store, "acme", entries=1)
    run_pipeline(store, pipeline)
    s = streams_app(database, store)
    with TestClient(s.app) as client:
        yield s, client, str(pipeline.id)


def error(client: TestClient, url: str, headers: dict[str, str]) -> tuple[int, str]:
    response = client.get(url, headers=headers)
    return response.status_code, response.json()["error"]


def test_only_a_hash_of_the_token_is_stored(
    database: Database, schema: str, served: tuple[StreamsApp, TestClient, str]
) -> None:
    s, _, _ = served
    token = s.tokens.create_token("acme", ["read", "write"])
    assert token.startswith("pd_") and len(token) > 40
    with database.connect() as conn:
        rows = conn.execute(
            sql.SQL("SELECT hash, workspace, scopes, admin, revoked FROM {}").format(
                sql.Identifier(schema, "api_tokens")
            )
        ).fetchall()
    assert rows == [
        (hashlib.sha256(token.encode()).hexdigest(), "acme", ["read", "write"], False, False)
    ]
    assert token not in repr(rows)


def test_token_creation_refuses_unknown_scopes_and_workspace_less_tokens(
    served: tuple[StreamsApp, TestClient, str],
) -> None:
    s, _, _ = served
    with pytest.raises(ValueError, match="unknown scopes"):
        s.tokens.create_token("acme", ["read", "root"])
    with pytest.raises(ValueError, match="needs a workspace"):
        s.tokens.create_token(None, ["read"])


def test_auth_matrix_on_streams(served: tuple[StreamsApp, TestClient, str]) -> None:
    s, client, pipeline_id = served
    acme_read = bearer(s.tokens.create_token("acme", ["read"]))
    acme_write = bearer(s.tokens.create_token("acme", ["write"]))
    acme_publish = bearer(s.tokens.create_token("acme", ["publish"]))
    other_read = bearer(s.tokens.create_token("other", ["read"]))
    admin = bearer(s.tokens.create_token(None, [], admin=True))
    pipeline = f"/pipelines/{pipeline_id}/events"
    workspace = "/workspaces/acme/events?follow=false"
    everything = "/events?follow=false"
    for url in (pipeline, workspace, everything):
        assert error(client, url, {}) == (401, "unauthorized")
        assert error(client, url, bearer("pd_not-a-token")) == (401, "unauthorized")
        assert error(client, url, {"Authorization": "Basic YTpi"}) == (401, "unauthorized")
    for url in (pipeline, workspace):
        assert error(client, url, other_read) == (404, "not_found")
        assert error(client, url, acme_write) == (403, "forbidden")
        assert client.get(url, headers=acme_read).status_code == 200
        assert client.get(url, headers=acme_publish).status_code == 200  # publish implies read
        assert client.get(url, headers=admin).status_code == 200
    assert error(client, everything, acme_read) == (403, "forbidden")
    response = client.get(everything, headers=admin)
    assert response.status_code == 200
    assert {e.data["workspace"] for e in parse_sse(response.text.splitlines())} == {"acme", "other"}


def test_a_ticket_works_once_on_streams_only(served: tuple[StreamsApp, TestClient, str]) -> None:
    s, client, pipeline_id = served
    token = bearer(s.tokens.create_token("acme", ["read"]))
    assert client.post("/stream-tickets").status_code == 401
    response = client.post("/stream-tickets", headers=token)
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"ticket", "expires_at"}
    ticket = body["ticket"]
    url = f"/pipelines/{pipeline_id}/events"
    first = client.get(url, params={"ticket": ticket})
    assert first.status_code == 200
    assert [e.event for e in parse_sse(first.text.splitlines())][-1] == "PipelineCompleted"
    assert error(client, f"{url}?ticket={ticket}", {}) == (401, "unauthorized")
    # not accepted where headers can be sent
    fresh = client.post("/stream-tickets", headers=token).json()["ticket"]
    assert client.post(f"/stream-tickets?ticket={fresh}").status_code == 401
    # scoped like the token it was made from
    fresh = client.post("/stream-tickets", headers=token).json()["ticket"]
    assert error(client, f"/workspaces/other/events?ticket={fresh}", {}) == (404, "not_found")


def test_an_expired_ticket_is_refused(served: tuple[StreamsApp, TestClient, str]) -> None:
    s, client, pipeline_id = served
    principal = s.tokens.lookup(s.tokens.create_token("acme", ["read"]))
    assert principal is not None
    ticket, _ = s.tokens.create_ticket(principal, 0)
    url = f"/pipelines/{pipeline_id}/events?ticket={ticket}"
    assert error(client, url, {}) == (401, "unauthorized")


def test_revocation_takes_effect_at_once_in_every_process(
    database: Database, schema: str, served: tuple[StreamsApp, TestClient, str]
) -> None:
    """Another process (here another store on its own pool) revokes; the next request is 401."""
    s, client, pipeline_id = served
    token = s.tokens.create_token("acme", ["read"])
    url = f"/pipelines/{pipeline_id}/events"
    assert client.get(url, headers=bearer(token)).status_code == 200
    elsewhere = TokenStore(database.conninfo, schema)
    elsewhere.open()
    try:
        assert elsewhere.revoke(token)
    finally:
        elsewhere.close()
    assert error(client, url, bearer(token)) == (401, "unauthorized")
    assert not s.tokens.revoke(token), "revoking twice finds no live token"


def test_token_creation_refuses_admin_as_a_scope_and_empty_scopes(
    served: tuple[StreamsApp, TestClient, str],
) -> None:
    s, _, _ = served
    with pytest.raises(ValueError, match="admin is not a scope"):
        s.tokens.create_token("acme", ["read", "admin"])
    with pytest.raises(ValueError, match="at least one scope"):
        s.tokens.create_token("acme", [])
    with pytest.raises(ValueError, match="global"):
        s.tokens.create_token("acme", ["read"], admin=True)
    assert [(t.workspace, t.admin) for t in s.tokens.list_tokens()] == []


def test_a_revoked_token_is_listed_as_revoked_without_its_secret(
    served: tuple[StreamsApp, TestClient, str],
) -> None:
    s, _, _ = served
    token = s.tokens.create_token("acme", ["read", "write"])
    (row,) = s.tokens.list_tokens()
    assert (row.workspace, row.scopes, row.admin, row.revoked) == (
        "acme",
        ["read", "write"],
        False,
        False,
    )
    assert token not in repr(row) and token_hash(token) not in repr(row)
    assert s.tokens.revoke_id(row.id)
    assert s.tokens.lookup(token) is None
    assert [t.revoked for t in s.tokens.list_tokens()] == [True]
