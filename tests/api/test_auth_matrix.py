"""The auth matrix of API.md §8 over every command and query endpoint.

For each endpoint: no token, a malformed header, an unknown and a revoked
token are 401; another workspace's token is 404, never 403 (it must not learn
that the workspace or pipeline exists); a token of the workspace without the
endpoint's scope (itself or through one that implies it, README "Scopes") is
403; none of those writes anything. The token with the scope, and an admin
token, get past auth to the endpoint's own answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from infrastructure.postgres.tokens import IMPLIED
from tests.api.api_support import Publishd, assert_error, new_workspace_id

SCOPES = ("read", "write", "publish")
DEAD = {"type": "sandbox", "base_url": "http://127.0.0.1:9"}


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    scope: str
    """The scope it needs; ``admin`` for admin-only endpoints."""
    allowed: int
    """What a caller who may call it gets in the set-up state (success or a non-auth error)."""
    body: Any = None
    workspace_less: bool = False
    """Outside every workspace: a workspace token is 403, not 404."""

    def url(self, ws: str, pipeline_id: str) -> str:
        return self.path.format(ws=ws, pid=pipeline_id, fresh=new_workspace_id())

    def json(self) -> Any:
        if self.body == "fresh-workspace":
            return {"id": new_workspace_id(), "connector": DEAD}
        return self.body


D = "/workspaces/{ws}/drafts/alice"
CASES = [
    Case("GET", "/workspaces/{ws}", "read", 200),
    Case("PUT", "/workspaces/{ws}/connector", "admin", 200, DEAD),
    Case("PUT", "/workspaces/{ws}/schemas/authors", "write", 200, {}),
    Case("POST", "/workspaces/{ws}/pulls", "write", 422, {"folders": ["nope"]}),
    Case("GET", "/workspaces/{ws}/files/books/a.json?draft=alice", "read", 200),
    Case("PUT", D + "/files/books/b.json", "write", 200, {"title": "B"}),
    Case("DELETE", D + "/files/books/a.json", "write", 204),
    Case("GET", D + "/changes", "read", 200),
    Case("DELETE", D, "write", 204),
    Case("POST", D + "/plans", "publish", 201),
    Case("POST", "/workspaces/{ws}/drafts/nobody/publish", "publish", 422),
    Case("POST", "/pipelines/{pid}/run", "publish", 409),  # the draft moved: stale
    Case("POST", "/pipelines/{pid}/cancel", "publish", 202),
    Case("POST", "/pipelines/{pid}/retry", "publish", 409),  # planned: not retryable
    Case("GET", "/pipelines/{pid}", "read", 200),
    Case("GET", "/pipelines/{pid}/entries", "read", 200),
    Case("GET", "/pipelines?workspace={ws}", "read", 200),
    Case("GET", "/workspaces/{ws}/file-index?folder=books", "read", 422),
    Case("GET", "/workspaces/{ws}/references?target=@/books/a.json", "read", 200),
    Case("POST", "/workspaces", "admin", 201, "fresh-workspace", workspace_less=True),
    Case("GET", "/metrics", "admin", 200, workspace_less=True),
]


def set_up(api: Publishd) -> tuple[str, str]:
    """A workspace with a draft and a planned (then stale) pipeline, written directly."""
    app = api.runtime.app
    ws = new_workspace_id()
    app.create_workspace(ws, DEAD)
    app.register_schema(ws, "books", {})
    app.write_draft_file(ws, "alice", "books/a.json", {"title": "A"})
    pipeline_id = app.plan(ws, "alice").pipeline_id
    app.write_draft_file(ws, "alice", "books/c.json", {"title": "C"})
    return ws, pipeline_id


def call(api: Publishd, case: Case, ws: str, pid: str, **kw: Any) -> Any:
    body = case.json()
    extra = {} if body is None else {"json": body}
    return api.request(case.method, case.url(ws, pid), **extra, **kw)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method} {c.path}")
def test_auth_matrix(api: Publishd, case: Case) -> None:
    ws, pid = set_up(api)
    other, _ = set_up(api)
    revoked = api.token(ws, ",".join(SCOPES))
    api.runtime.tokens.revoke(revoked)
    before = api.head()

    for headers in (
        {},
        {"Authorization": "Bearer pd_unknown"},
        {"Authorization": "Basic eDp5"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {revoked}"},
    ):
        assert_error(call(api, case, ws, pid, auth=False, headers=headers), 401, "unauthorized")

    foreign = call(api, case, ws, pid, token=api.token(other, ",".join(SCOPES)))
    if case.workspace_less:
        assert_error(foreign, 403, "forbidden")
    else:
        assert_error(foreign, 404, "not_found")

    lacking = [s for s in SCOPES if s != case.scope and case.scope not in IMPLIED.get(s, ())]
    assert_error(call(api, case, ws, pid, token=api.token(ws, ",".join(lacking))), 403, "forbidden")
    assert api.head() == before, "a refused request wrote something"

    if case.scope != "admin":
        allowed = call(api, case, ws, pid, token=api.token(ws, case.scope))
        assert allowed.status_code == case.allowed, allowed.text
    fresh_ws, fresh_pid = set_up(api)
    admin = call(api, case, fresh_ws, fresh_pid)
    assert admin.status_code == case.allowed, admin.text


def test_a_foreign_workspace_looks_like_a_missing_one(api: Publishd) -> None:
    ws, pid = set_up(api)
    mine, _ = set_up(api)
    token = api.token(mine, ",".join(SCOPES))
    foreign = assert_error(api.get(f"/workspaces/{ws}", token=token), 404, "not_found")
    missing = new_workspace_id()
    absent = assert_error(api.get(f"/workspaces/{missing}", token=token), 404, "not_found")
    assert foreign["message"].replace(ws, "X") == absent["message"].replace(missing, "X")
    assert_error(api.get(f"/pipelines/{pid}", token=token), 404, "not_found")
    assert_error(
        api.get("/pipelines/00000000-0000-0000-0000-000000000000", token=token), 404, "not_found"
    )


def test_pipeline_list_is_scoped_to_the_token(api: Publishd) -> None:
    ws, pid = set_up(api)
    other, other_pid = set_up(api)
    token = api.token(ws, "read")
    listed = api.ok("GET", "/pipelines", token=token)["pipelines"]
    assert [p["pipeline_id"] for p in listed] == [pid]
    assert_error(api.get(f"/pipelines?workspace={other}", token=token), 404, "not_found")
    everything = api.ok("GET", "/pipelines?limit=500")["pipelines"]
    assert {pid, other_pid} <= {p["pipeline_id"] for p in everything}
    assert {p["workspace"] for p in everything} >= {ws, other}


def test_health_and_openapi_need_no_token(api: Publishd) -> None:
    assert api.get("/healthz", auth=False).status_code == 200
    assert api.get("/openapi.json", auth=False).status_code == 200
