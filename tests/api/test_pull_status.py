"""API.md §2 over real HTTP: ``GET /pulls/{id}`` and ``GET /workspaces/{ws}/pulls``.

Pulls are started through the API against a live sandbox; their status is read
back as a client reads it, including who may read it and what it refuses.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from tests.api.api_support import Publishd, Sandbox, assert_error, library, new_workspace_id

pytestmark = pytest.mark.timeout(120)

FIELDS = {
    "pull_id",
    "workspace",
    "scope",
    "state",
    "created",
    "updated",
    "unchanged",
    "deleted",
    "error",
    "started_at",
    "finished_at",
}


def pulls(api: Publishd, ws: str, query: str = "") -> list[str]:
    found: dict[str, Any] = api.ok("GET", f"/workspaces/{ws}/pulls{query}")
    return [p["pull_id"] for p in found["pulls"]]


def ended(api: Publishd, pull_id: str) -> dict[str, Any]:
    """The pull's status once it has left ``running`` (waited for, with a deadline)."""

    def status() -> dict[str, Any] | None:
        found: dict[str, Any] = api.ok("GET", f"/pulls/{pull_id}")
        return None if found["state"] == "running" else found

    done: dict[str, Any] = api.wait_for(f"pull {pull_id} to end", status)
    return done


def test_a_pull_reports_its_scope_counts_and_times(api: Publishd, sandbox: Sandbox) -> None:
    ws = library(api, sandbox)  # its first pull created 6 records
    [first] = pulls(api, ws)
    sandbox.create("books", {"title": "War", "slug": "war"})
    accepted = api.ok("POST", f"/workspaces/{ws}/pulls", 202, json={"folders": ["books"]})
    status = ended(api, accepted["pull_id"])
    assert set(status) >= FIELDS
    assert {k: status[k] for k in FIELDS - {"started_at", "finished_at"}} == {
        "pull_id": accepted["pull_id"],
        "workspace": ws,
        "scope": {"folders": ["books"]},
        "state": "completed",
        "created": 1,
        "updated": 0,
        "unchanged": 3,
        "deleted": 0,
        "error": None,
    }
    started, finished = status["started_at"], status["finished_at"]
    assert datetime.fromisoformat(started) <= datetime.fromisoformat(finished)

    assert pulls(api, ws) == [accepted["pull_id"], first]
    assert pulls(api, ws, "?limit=1") == [accepted["pull_id"]]
    assert pulls(api, ws, "?state=completed") == [accepted["pull_id"], first]
    assert pulls(api, ws, "?state=running") == []
    listed = api.ok("GET", f"/workspaces/{ws}/pulls")["pulls"][0]
    assert listed == api.ok("GET", f"/pulls/{accepted['pull_id']}")


def test_a_failed_pull_reports_its_error(api: Publishd, sandbox: Sandbox) -> None:
    ws = library(api, sandbox)
    api.ok("PUT", f"/workspaces/{ws}/schemas/ghosts", json={})  # the service has no such collection
    accepted = api.ok("POST", f"/workspaces/{ws}/pulls", 202, json={"folders": ["ghosts"]})
    status = ended(api, accepted["pull_id"])
    assert status["state"] == "failed"
    assert isinstance(status["error"], str) and status["error"]
    assert status["finished_at"] is not None
    assert pulls(api, ws, "?state=failed") == [accepted["pull_id"]]


def test_who_may_read_a_pull(api: Publishd, sandbox: Sandbox) -> None:
    ws = library(api, sandbox)
    [pull_id] = pulls(api, ws)
    other = new_workspace_id()
    connector = {"type": "sandbox", "base_url": sandbox.url}
    api.ok("POST", "/workspaces", 201, json={"id": other, "connector": connector})
    reader, strangers, writer = api.token(ws, "read"), api.token(other), api.token(ws, "write")

    assert api.ok("GET", f"/pulls/{pull_id}", token=reader)["pull_id"] == pull_id
    assert pulls(api, ws) == [pull_id]
    assert api.ok("GET", f"/workspaces/{ws}/pulls", token=reader)["pulls"][0]["pull_id"] == pull_id
    # another workspace's token must not learn that the pull (or the workspace) exists
    assert_error(api.get(f"/pulls/{pull_id}", token=strangers), 404, "not_found")
    assert_error(api.get(f"/workspaces/{ws}/pulls", token=strangers), 404, "not_found")
    assert api.ok("GET", f"/workspaces/{other}/pulls", token=strangers) == {"pulls": []}
    assert_error(api.get(f"/pulls/{pull_id}", token=writer), 403, "forbidden")
    assert_error(api.get(f"/workspaces/{ws}/pulls", token=writer), 403, "forbidden")
    assert_error(api.get(f"/pulls/{pull_id}", auth=False), 401, "unauthorized")
    assert_error(api.get(f"/workspaces/{ws}/pulls", auth=False), 401, "unauthorized")


def test_unknown_pulls_and_bad_queries(api: Publishd, sandbox: Sandbox) -> None:
    ws = library(api, sandbox)
    assert_error(api.get("/pulls/00000000-0000-0000-0000-000000000000"), 404, "not_found")
    assert_error(api.get("/pulls/not-a-uuid"), 404, "not_found")
    assert_error(api.get("/pulls/%00"), 404, "not_found")
    assert_error(api.get(f"/workspaces/{new_workspace_id()}/pulls"), 404, "not_found")
    for query in ("?state=nope", "?limit=0", "?limit=501", "?limit=many", "?state=%00"):
        assert_error(api.get(f"/workspaces/{ws}/pulls{query}"), 422, "invalid_request")
