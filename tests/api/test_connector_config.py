"""Connector configs over real HTTP (issue 13, defects 3 and 6): nothing secret recorded or
echoed, and no address accepted that the connector could never reach."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.api_support import Publishd, Sandbox, assert_error, new_workspace_id

pytestmark = pytest.mark.timeout(60)

SECRET = "s3cret-value"
LIVE = "http://127.0.0.1:9"

REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"type": "sandbox", "base_url": LIVE, "token": SECRET}, "connector.token"),
    ({"type": "sandbox", "base_url": LIVE, "api_key": SECRET}, "connector.api_key"),
    ({"type": "sandbox", "base_url": LIVE, "token": {"env": SECRET}}, "connector.token"),
    ({"type": "sandbox", "base_url": f"http://admin:{SECRET}@127.0.0.1:9"}, "credentials"),
    ({"type": "sandbox", "base_url": f"http://{SECRET}@127.0.0.1:9/api"}, "credentials"),
    ({"type": "sandbox", "base_url": f"{LIVE}/?key={SECRET}"}, "query"),
    ({"type": "sandbox", "base_url": "http://127.0.0.1:99999/"}, "connector.base_url"),
    ({"type": "sandbox", "base_url": "http://[::1/"}, "connector.base_url"),
    ({"type": "sandbox", "base_url": "http://a_b/"}, "connector.base_url"),
    ({"type": "webflow", "base_url": "https://api.webflow.com/v2"}, "connector.site_id"),
    ({"type": "airtable", "base_url": "https://api.airtable.com/v0"}, "connector.base_id"),
]
IDS = [
    "token",
    "api-key",
    "token-env",
    "userinfo",
    "user-only",
    "query",
    "port",
    "ipv6",
    "host",
    "webflow",
    "airtable",
]


@pytest.mark.parametrize(("connector", "named"), REFUSED, ids=IDS)
def test_a_new_workspace_with_such_a_connector_is_refused_and_nothing_recorded(
    api: Publishd, connector: dict[str, Any], named: str
) -> None:
    before = api.head()
    ws = new_workspace_id()

    response = api.post("/workspaces", json={"id": ws, "connector": connector})

    error = assert_error(response, 422, "invalid_request")
    assert named in error["message"]
    assert SECRET not in response.text
    assert api.head() == before
    assert_error(api.get(f"/workspaces/{ws}"), 404, "not_found")


@pytest.mark.parametrize(("connector", "named"), REFUSED, ids=IDS)
def test_repointing_a_workspace_at_such_a_connector_is_refused(
    api: Publishd, connector: dict[str, Any], named: str
) -> None:
    ws = new_workspace_id()
    api.ok(
        "POST",
        "/workspaces",
        201,
        json={"id": ws, "connector": {"type": "sandbox", "base_url": LIVE}},
    )
    before = api.head()

    response = api.put(f"/workspaces/{ws}/connector", json=connector)

    error = assert_error(response, 422, "invalid_request")
    assert named in error["message"]
    assert SECRET not in response.text
    assert api.head() == before


def test_a_workspace_stream_never_serves_a_secret_that_was_offered(api: Publishd) -> None:
    ws = new_workspace_id()
    api.ok(
        "POST",
        "/workspaces",
        201,
        json={"id": ws, "connector": {"type": "sandbox", "base_url": LIVE}},
    )
    for connector, _ in REFUSED:
        api.put(f"/workspaces/{ws}/connector", json=connector)
    reader = api.token(ws, "read")

    served = api.get(f"/workspaces/{ws}/events?follow=false", token=reader)

    assert served.status_code == 200, served.text
    assert "WorkspaceCreated" in served.text
    assert SECRET not in served.text and "ConnectorChanged" not in served.text


def test_a_base_url_with_a_path_is_a_prefix_with_or_without_its_slash(
    api: Publishd, sandbox: Sandbox
) -> None:
    """``http://host/api`` was accepted, then crashed every run inside the HTTP client."""
    ws = new_workspace_id()
    sandbox.define({"notes": {}})
    sandbox.create("notes", {"slug": "hello", "text": "hi"})
    created = api.ok(
        "POST",
        "/workspaces",
        201,
        json={"id": ws, "connector": {"type": "sandbox", "base_url": f"{sandbox.url}/nowhere"}},
    )
    assert created["connector"]["base_url"] == f"{sandbox.url}/nowhere"
    api.ok("PUT", f"/workspaces/{ws}/schemas/notes", json={})

    pulled = api.post(f"/workspaces/{ws}/pulls?wait=true")

    # The service is not under /nowhere: the pull ends, failed with the service's 404,
    # instead of crashing each time a worker takes it.
    assert pulled.status_code in (200, 502), pulled.text
    status = api.ok("GET", f"/pulls/{pulled.json()['pull_id']}")
    assert status["state"] == "failed" and "Not Found" in status["error"], status
    assert api.ok("GET", f"/workspaces/{ws}")["publishing"] is None

    for base_url in (sandbox.url, f"{sandbox.url}/"):
        api.ok("PUT", f"/workspaces/{ws}/connector", json={"type": "sandbox", "base_url": base_url})
        assert api.ok("POST", f"/workspaces/{ws}/pulls?wait=true")["state"] == "completed"
