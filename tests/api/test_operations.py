"""API.md §9 over real HTTP: liveness, metrics and the OpenAPI document, with their errors.

One live publishd for the session (``api``), a fresh sandbox and workspace per
test (``tests/api/conftest.py``). Metrics are read the way Prometheus reads
them, from the text of ``/metrics``.
"""

from __future__ import annotations

import re

import pytest

from tests.api.api_support import (
    Publishd,
    assert_error,
    draft_url,
    edit_title,
    plan,
    write,
)

pytestmark = pytest.mark.timeout(120)


def test_healthz_needs_no_token(api: Publishd) -> None:
    response = api.get("/healthz", auth=False)
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_metrics_are_prometheus_text(api: Publishd, ws: str) -> None:
    write(api, ws, "authors/tolstoy.json", {"name": "Tolstoy", "slug": "tolstoy"})
    assert api.ok("POST", f"{draft_url(ws)}/publish?wait=true")["state"] == "completed"

    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    samples = {
        line.split(" ")[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert "# TYPE publishd_pipelines gauge" in text
    assert samples['publishd_pipelines{state="completed"}'] >= 1
    assert samples['publishd_entries{status="published"}'] >= 1
    lags = [k for k in samples if k.startswith("publishd_projection_lag_events{")]
    assert lags and all(samples[k] >= 0 for k in lags)
    assert samples["publishd_open_streams"] >= 0
    assert "publishd_connector_latency_seconds" in text
    assert_error(api.get("/metrics", auth=False), 401, "unauthorized")
    assert_error(api.get("/metrics", token=api.token(ws)), 403, "forbidden")


CONNECTOR_CALLS = re.compile(
    r'^publishd_connector_latency_seconds_count\{connector="sandbox",operation="(\w+)"\} (\S+)$'
)


def connector_calls(api: Publishd) -> dict[str, float]:
    """How many sandbox connector calls ``/metrics`` has timed so far, by operation."""
    found: dict[str, float] = {}
    for line in api.get("/metrics").text.splitlines():
        match = CONNECTOR_CALLS.match(line)
        if match:
            found[match[1]] = float(match[2])
    return found


def test_metrics_time_every_connector_call(api: Publishd, ws: str) -> None:
    write(api, ws, "authors/tolstoy.json", {"name": "Tolstoy", "slug": "tolstoy"})
    edit_title(api, ws, "books/old-man.json", "Old Man (timed)")
    assert api.delete(f"{draft_url(ws)}/files/menus/main.json").status_code == 204
    planned = plan(api, ws)
    assert sorted(e["phase"] for e in planned["entries"]) == ["create", "delete", "edit"]
    before = connector_calls(api)

    run = api.ok("POST", f"/pipelines/{planned['pipeline_id']}/run?wait=true")
    assert run["state"] == "completed", run
    pull = api.ok("POST", f"/workspaces/{ws}/pulls?wait=true", json={"folders": ["authors"]})
    assert pull["state"] == "completed", pull

    after = connector_calls(api)
    operations = ("create_many", "update_many", "delete_many", "list_page")
    assert {op: after.get(op, 0) - before.get(op, 0) for op in operations} == {
        "create_many": 1,
        "update_many": 1,
        "delete_many": 1,
        "list_page": 1,
    }


def test_openapi_lists_every_path(api: Publishd) -> None:
    response = api.get("/openapi.json", auth=False)
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    expected = {
        ("post", "/workspaces"),
        ("get", "/workspaces/{ws}"),
        ("put", "/workspaces/{ws}/connector"),
        ("put", "/workspaces/{ws}/schemas/{folder}"),
        ("post", "/workspaces/{ws}/pulls"),
        ("get", "/workspaces/{ws}/files/{path}"),
        ("put", "/workspaces/{ws}/drafts/{user}/files/{path}"),
        ("delete", "/workspaces/{ws}/drafts/{user}/files/{path}"),
        ("get", "/workspaces/{ws}/drafts/{user}/changes"),
        ("delete", "/workspaces/{ws}/drafts/{user}"),
        ("post", "/workspaces/{ws}/drafts/{user}/plans"),
        ("post", "/workspaces/{ws}/drafts/{user}/publish"),
        ("post", "/pipelines/{pipeline_id}/run"),
        ("post", "/pipelines/{pipeline_id}/cancel"),
        ("post", "/pipelines/{pipeline_id}/retry"),
        ("get", "/pipelines/{pipeline_id}"),
        ("get", "/pipelines"),
        ("get", "/pipelines/{pipeline_id}/entries"),
        ("get", "/pipelines/{pipeline_id}/events"),
        ("get", "/workspaces/{ws}/events"),
        ("get", "/events"),
        ("post", "/stream-tickets"),
        ("get", "/workspaces/{ws}/file-index"),
        ("get", "/workspaces/{ws}/references"),
        ("get", "/healthz"),
        ("get", "/metrics"),
        ("get", "/openapi.json"),
    }
    listed = {(method, path) for path, ops in paths.items() for method in ops}
    assert expected - listed == set()
    for path, ops in paths.items():
        names = set(re.findall(r"{(\w+)}", path))
        for op in ops.values():
            assert op["responses"], path
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == names, path
    for ref in re.findall(r'"\$ref":\s*"#/components/schemas/(\w+)"', response.text):
        assert ref in document["components"]["schemas"]
