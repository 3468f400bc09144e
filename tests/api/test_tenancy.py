"""Issue 13 defects 8, 9 and 13b: no answer tells one tenant anything of another.

Another workspace's pipeline or pull answers exactly as an absent one (code
and message, the id aside); a ``before`` the caller may not see orders
nothing; a ``publish`` token sees what it publishes, because ``publish``
implies ``read`` (README "Scopes"); the public OpenAPI document holds no
tenant's data.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.api.api_support import Publishd, assert_error, new_workspace_id
from tests.api.test_auth_matrix import DEAD, SCOPES, set_up

pytestmark = pytest.mark.timeout(60)

PIPELINE_CALLS = [
    ("GET", ""),
    ("POST", "/run"),
    ("POST", "/cancel"),
    ("POST", "/retry"),
    ("GET", "/entries"),
    ("GET", "/events?follow=false"),
]


def answer(response: httpx.Response, object_id: str) -> tuple[int, dict[str, Any]]:
    """The status and body with the id asked for blanked out: what the two must share."""
    body: dict[str, Any] = response.json()
    body["message"] = body["message"].replace(object_id, "ID")
    return response.status_code, body


@pytest.mark.parametrize(("method", "suffix"), PIPELINE_CALLS)
def test_another_workspaces_pipeline_answers_as_an_absent_one(
    api: Publishd, method: str, suffix: str
) -> None:
    _, theirs = set_up(api)
    mine, _ = set_up(api)
    token = api.token(mine, ",".join(SCOPES))
    absent = str(uuid.uuid4())
    before = api.head()

    foreign = api.request(method, f"/pipelines/{theirs}{suffix}", token=token)
    missing = api.request(method, f"/pipelines/{absent}{suffix}", token=token)

    assert_error(foreign, 404, "not_found")
    assert answer(foreign, theirs) == answer(missing, absent)
    assert api.head() == before, "a refused request wrote something"


def test_another_workspaces_pull_answers_as_an_absent_one(api: Publishd) -> None:
    theirs = new_workspace_id()
    api.runtime.app.create_workspace(theirs, DEAD)
    pull_id = api.runtime.app.start_pull(theirs).pull_id
    mine, _ = set_up(api)
    token = api.token(mine, "read")
    absent = str(uuid.uuid4())

    foreign = api.get(f"/pulls/{pull_id}", token=token)
    missing = api.get(f"/pulls/{absent}", token=token)

    assert_error(foreign, 404, "not_found")
    assert answer(foreign, pull_id) == answer(missing, absent)


def test_a_before_the_caller_may_not_see_orders_nothing(api: Publishd) -> None:
    app = api.runtime.app
    mine, first = set_up(api)
    _, theirs = set_up(api)  # created between my two pipelines
    app.write_draft_file(mine, "bob", "books/b.json", {"title": "B"})
    app.plan(mine, "bob")
    token = api.token(mine, "read")

    def listed(before: str) -> Any:
        return api.ok("GET", f"/pipelines?before={before}", token=token)

    assert listed(first) == {"pipelines": []}
    assert listed(theirs) == listed(str(uuid.uuid4())) == {"pipelines": []}


def test_a_publish_token_sees_what_it_publishes_and_a_write_token_does_not(
    api: Publishd,
) -> None:
    ws, _ = set_up(api)
    publisher, writer = api.token(ws, "publish"), api.token(ws, "write")
    draft = f"/workspaces/{ws}/drafts/alice"

    planned = api.ok("POST", f"{draft}/plans", 201, token=publisher)
    assert planned["entries"], "the plan shows its entries to the token that planned it"
    pipeline = f"/pipelines/{planned['pipeline_id']}"
    for path in (pipeline, f"{pipeline}/entries", f"{draft}/changes", f"/workspaces/{ws}"):
        assert api.get(path, token=publisher).status_code == 200, path

    assert_error(api.post(f"{draft}/plans", token=writer), 403, "forbidden")
    assert_error(api.get(pipeline, token=writer), 403, "forbidden")
    assert_error(api.get(f"{draft}/changes", token=writer), 403, "forbidden")


def test_the_public_api_document_holds_no_tenant_data(api: Publishd) -> None:
    ws, pipeline_id = set_up(api)
    response = api.get("/openapi.json", auth=False)
    assert response.status_code == 200
    assert response.json()["paths"]
    for secret in (ws, pipeline_id, "books/a.json", api.admin_token):
        assert secret not in response.text
