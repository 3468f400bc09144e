"""Schemathesis against the live ``/openapi.json``: no 5xx, every answer as documented.

Each documented operation gets a bounded number of generated requests, in four
runs: positive and negative data, with path parameters generated and with
them fixed to a real workspace, draft user and pipeline (so bodies reach the
validation behind the path). Every answer must be documented for its status,
content type and body; negative data must be refused; and a refused request
must never write an event. The streams are left out: they tail forever, and
their own tests cover them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from domain.pipeline import TERMINAL_STATES
from infrastructure.postgres.database import Database
from interfaces.http.app import documented_elsewhere, endpoints
from tests.api.api_support import Publishd, Sandbox, serve_publishd, serve_sandbox

pytestmark = pytest.mark.timeout(120)

EXAMPLES = 12
STREAMS = {"/events", "/workspaces/{ws}/events", "/pipelines/{pipeline_id}/events"}


def _documented(path: str) -> str:
    return re.sub(r"{(\w+)(?::\w+)?}", r"{\1}", path)  # /files/{path:path} -> /files/{path}


OPERATIONS = sorted(
    {
        (ep.method, _documented(ep.path))
        for ep in [*endpoints(), *documented_elsewhere(with_metrics=True)]
        if _documented(ep.path) not in STREAMS
    }
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


class Live:
    """The API, its schema, and real objects for path parameters that nothing can set running.

    Generated requests must not start background work: it would write events
    while a later request is being checked. So the fixed draft user has no
    draft (publish and plan are ``nothing_to_publish``), the fixed pipeline is
    stale (run, retry and cancel are 409), and pulls on the fixed workspace
    wait for their end, against a live sandbox.
    """

    def __init__(self, api: Publishd, sandbox: Sandbox) -> None:
        self.api = api
        self.schema = schemathesis.openapi.from_url(f"{api.base_url}/openapi.json")
        sandbox.define({"books": {}})
        sandbox.create("books", {"title": "Old Man", "slug": "old-man"})
        app = api.runtime.app
        app.create_workspace("acme", {"type": "sandbox", "base_url": sandbox.url})
        app.register_schema("acme", "books", {})
        app.write_draft_file("acme", "alice", "books/a.json", {"title": "A"})
        self.pipeline_id = app.plan("acme", "alice").pipeline_id
        app.write_draft_file("acme", "alice", "books/b.json", {"title": "B"})
        api.post(f"/pipelines/{self.pipeline_id}/run")
        assert api.ok("GET", f"/pipelines/{self.pipeline_id}")["state"] == "stale"
        self.fixed = {"ws": "acme", "user": "carol", "pipeline_id": self.pipeline_id}


@pytest.fixture(scope="module")
def live(database: Database) -> Iterator[Live]:
    """A publishd of its own: what this module writes stays out of the others' way."""
    with serve_publishd(database) as api, serve_sandbox() as sandbox:
        yield Live(api, sandbox)


def settle(api: Publishd, accepted: dict[str, Any]) -> None:
    """Wait for the work a 202 started (a pull of a generated workspace, a run) to end."""
    if "pull_id" in accepted:
        pull_id = accepted["pull_id"]
        api.wait_for(f"pull {pull_id}", lambda: api.runtime.app.pull(pull_id).state != "running")
    elif "pipeline_id" in accepted:
        api.wait_state(accepted["pipeline_id"], *TERMINAL_STATES)


def exercise(live: Live, method: str, path: str, mode: GenerationMode, fixed: bool) -> None:
    operation = live.schema[path][method]
    names = {p["name"] for p in operation.definition.raw.get("parameters", []) if p["in"] == "path"}
    path_parameters = {k: v for k, v in live.fixed.items() if k in names} if fixed else None
    query = {"wait": "true"} if fixed and path.endswith("/pulls") else None
    strategy = operation.as_strategy(
        generation_mode=mode, path_parameters=path_parameters, query=query
    )
    headers = {"Authorization": f"Bearer {live.api.admin_token}"}
    api = live.api

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: Any) -> None:
        # On the case itself, so the checks judge the request as it was sent: schemathesis
        # may have "negated" the bearer scheme by leaving the header out.
        case.headers = {**(case.headers or {}), **headers}
        before = api.head()
        response = case.call_and_validate(base_url=api.base_url, checks=CHECKS, timeout=30)
        if response.status_code == 202:
            settle(api, response.json())
        if response.status_code >= 400:
            assert api.head() == before, (
                f"{case.method} {case.formatted_path} was refused with "
                f"{response.status_code} but wrote events"
            )

    check()


@pytest.mark.parametrize(
    "mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"]
)
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation(live: Live, method: str, path: str, mode: GenerationMode) -> None:
    definition = live.schema[path][method].definition.raw
    if mode.is_negative and not (definition.get("parameters") or "requestBody" in definition):
        return  # nothing in the request to get wrong (/healthz, /metrics, ...)
    exercise(live, method, path, mode, fixed=False)
    if "{" in path and not path.endswith("/connector"):  # a fixed one would repoint acme
        exercise(live, method, path, mode, fixed=True)


def test_every_documented_operation_is_exercised(live: Live) -> None:
    documented = {
        (method.upper(), path)
        for path, ops in live.schema.raw_schema["paths"].items()
        for method in ops
        if path not in STREAMS
    }
    assert documented == set(OPERATIONS)
