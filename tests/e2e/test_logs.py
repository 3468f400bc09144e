"""``publishd serve``'s log lines, read from its stderr: one request's ids on each of its lines.

The server runs as a process with ``PUBLISHD_LOG_FORMAT=json``; the test plans
a draft with a request id of its own and reads back the lines written while
that request was handled: the application's ("planned pipeline …") and the
access line, each carrying the same request id, trace id and workspace, and
no token anywhere.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from infrastructure.postgres.database import Database
from interfaces.bootstrap import Runtime
from tests.support.serve_process import serve_process

pytestmark = pytest.mark.timeout(60)


def json_lines(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def lines_of(log: Path, request_id: str, at_least: int) -> list[dict[str, Any]]:
    """The log lines of one request, once ``at_least`` of them are written (or fail at 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        found = [line for line in json_lines(log) if line.get("request_id") == request_id]
        if len(found) >= at_least or time.monotonic() > deadline:
            return found
        time.sleep(0.05)  # a file another process appends to: nothing to wait on


def test_the_lines_of_one_request_carry_its_ids_and_no_secret(
    database: Database, schema: str, runtime: Runtime, tmp_path: Path
) -> None:
    env = {"PUBLISHD_LOG_FORMAT": "json", "PUBLISHD_LOG_LEVEL": "INFO"}
    with serve_process(database, schema, runtime, tmp_path, env) as server:
        auth = {"Authorization": f"Bearer {server.admin}"}
        with httpx.Client(base_url=server.url, headers=auth, timeout=10) as client:
            put = client.put("/workspaces/acme/drafts/alice/files/books/b1.json", json={"t": 1})
            assert put.status_code == 200, put.text
            traceparent = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
            plan = client.post(
                "/workspaces/acme/drafts/alice/plans",
                headers={"X-Request-Id": "plan-request-1", "traceparent": traceparent},
            )
            assert plan.status_code == 201, plan.text
            assert plan.headers["x-request-id"] == "plan-request-1"
            assert plan.headers["x-trace-id"] == "ab" * 16
            pipeline_id = plan.json()["pipeline_id"]
            status = client.get(f"/pipelines/{pipeline_id}").json()
            assert status["trace_id"] == "ab" * 16  # the plan's trace, whoever asks
            other = client.get("/healthz")
            assert other.headers["x-request-id"] not in ("", "plan-request-1")

        lines = lines_of(server.log, "plan-request-1", at_least=2)
        loggers = {line["logger"] for line in lines}
        assert "publishd.access" in loggers, lines
        assert "application.app" in loggers, lines
        for line in lines:
            assert line["trace_id"] == "ab" * 16, line
            assert line["workspace"] == "acme", line
            assert {"time", "level", "message"} <= line.keys(), line
        planned = next(line for line in lines if line["logger"] == "application.app")
        assert planned["pipeline_id"] == pipeline_id
        access = next(line for line in lines if line["logger"] == "publishd.access")
        assert access["status"] == 201 and access["method"] == "POST"
        assert access["path"] == "/workspaces/acme/drafts/alice/plans"
        assert isinstance(access["duration_ms"], float | int)
        assert server.admin not in server.log.read_text()
