"""The client commands as people and scripts use them, against a real ``publishd serve``.

The sandbox CMS runs over HTTP in this process; publishd in its own; the
``publishd`` command in a third, with stdin a pty where a person would answer.
Exit codes: 0 done, 1 error, 2 changes planned (``--detailed-exitcode``), 3 a
pipeline that ended without publishing everything.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest

from infrastructure.postgres.database import Database
from infrastructure.sandbox.app import create_app
from interfaces.bootstrap import Runtime
from tests.support.serve_process import serve_process
from tests.support.servers import running_server

pytestmark = pytest.mark.timeout(180)

SEED: dict[str, Any] = {
    "collections": {
        "authors": {"items": [{"id": "a1", "fieldData": {"name": "Ada", "slug": "ada"}}]},
        "books": {
            "referenceFields": {"author": {"target": "authors", "multiple": False}},
            "items": [{"id": "b1", "fieldData": {"title": "Old", "slug": "old", "author": "a1"}}],
        },
    }
}
"""``books.author`` is a reference in the CMS but plain in publishd's schema, so a
draft can send an author the CMS refuses: an entry that fails."""


@dataclass
class Live:
    url: str
    token: str
    api: httpx.Client
    cms: httpx.Client
    env: dict[str, str]

    def publishd(self, *args: str, env: dict[str, str] | None = None) -> Done:
        return run_cli(*args, env=self.env | (env or {}))

    def write(self, path: str, content: dict[str, Any]) -> None:
        answer = self.api.put(f"/workspaces/lib/drafts/alice/files/{path}", json=content)
        assert answer.status_code == 200, answer.text

    def title(self, item: str) -> str:
        return str(self.cms.get(f"/collections/books/items/{item}").json()["fieldData"]["title"])


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, env: dict[str, str]) -> Done:
    done = subprocess.run(
        [sys.executable, "-m", "interfaces.cli", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return Done(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def live(database: Database, schema: str, runtime: Runtime, tmp_path: Path) -> Iterator[Live]:
    """Workspace ``lib`` on a seeded sandbox, main pulled, publishd serving it."""
    with (
        running_server(create_app(SEED)) as cms_url,
        serve_process(database, schema, runtime, tmp_path, {}) as server,
        httpx.Client(base_url=cms_url) as cms,
        httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {server.admin}"}, timeout=60
        ) as api,
    ):
        runtime.app.create_workspace("lib", {"type": "sandbox", "base_url": cms_url})
        runtime.app.register_schema("lib", "authors", {})
        runtime.app.register_schema("lib", "books", {})
        pulled = api.post("/workspaces/lib/pulls", params={"wait": "true"}).json()
        assert pulled["state"] == "completed", pulled
        env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHD_")}
        env |= {"PUBLISHD_URL": server.url, "PUBLISHD_TOKEN": server.admin}
        yield Live(server.url, server.admin, api, cms, env)


def one_error_line(done: Done) -> str:
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def test_plan_shows_phases_counts_calls_and_diffs_with_detailed_exit_codes(live: Live) -> None:
    nothing = live.publishd("plan", "lib", "alice", "--detailed-exitcode")
    assert nothing.returncode == 0, nothing.stderr
    assert "No changes" in nothing.stdout and nothing.stderr == ""
    nothing_json = live.publishd("plan", "lib", "alice", "--json", "--detailed-exitcode")
    assert nothing_json.returncode == 0
    assert json.loads(nothing_json.stdout)["error"] == "nothing_to_publish"
    nothing_to_run = live.publishd("publish", "lib", "alice", "--yes", "--wait")
    assert (nothing_to_run.returncode, nothing_to_run.stderr) == (0, "")
    assert "No changes" in nothing_to_run.stdout

    live.write("books/old.json", {"id": "b1", "title": "New", "slug": "old", "author": "a1"})
    live.write("books/fresh.json", {"title": "Fresh", "slug": "fresh"})
    human = live.publishd("plan", "lib", "alice")
    assert human.returncode == 0, human.stderr
    out = human.stdout
    cells = [
        [c for c in line.split() if c not in ("│", "┃")]
        for line in out.splitlines()
        if line.startswith(("│", "┃"))
    ]
    assert ["edit", "1", "1"] in cells and ["create", "1", "1"] in cells, out
    assert ["total", "2", "2"] in cells, out
    assert 'title: "Old" → "New"' in out, out
    assert 'title: null → "Fresh"' in out, out
    assert "books/old.json  record b1" in out and "books/fresh.json" in out, out
    assert "1 to edit, 1 to create; estimated calls: 2 connector requests" in out, out
    assert "publishd run " in out

    detailed = live.publishd("plan", "lib", "alice", "--detailed-exitcode")
    assert detailed.returncode == 2, detailed.stderr
    as_json = live.publishd("plan", "lib", "alice", "--json", "--detailed-exitcode")
    assert as_json.returncode == 2, as_json.stderr
    plan = json.loads(as_json.stdout)  # the API's plan, unchanged
    assert plan["state"] == "planned" and plan["estimated_calls"] == 2
    assert [p["phase"] for p in plan["phases"]] == ["edit", "create"]
    assert live.title("b1") == "Old"  # planning sent nothing

    absent = live.publishd("plan", "nowhere", "alice", "--detailed-exitcode")
    assert absent.returncode == 1
    assert one_error_line(absent) == "error: workspace nowhere does not exist"


def test_publish_yes_runs_and_a_run_with_errors_exits_3_with_the_retry_command(
    live: Live,
) -> None:
    live.write("books/old.json", {"id": "b1", "title": "New", "slug": "old", "author": "a1"})
    done = live.publishd("publish", "lib", "alice", "--yes", "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Run this plan?" not in done.stdout
    assert 'title: "Old" → "New"' in done.stdout  # the plan it ran was shown
    assert "completed" in done.stdout and live.title("b1") == "New"

    live.write("books/bad.json", {"title": "Bad", "slug": "bad", "author": "nobody"})
    failed = live.publishd("publish", "lib", "alice", "--yes", "--wait", "--json")
    assert failed.returncode == 3, failed.stdout + failed.stderr
    final = json.loads(failed.stdout)
    assert final["state"] in ("completed_with_errors", "failed"), final
    pipeline_id = final["pipeline_id"]

    status = live.publishd("status", pipeline_id)
    assert status.returncode == 3, status.stderr
    assert "books/bad.json" in status.stdout
    assert f"publishd retry {pipeline_id}" in status.stdout
    status_json = live.publishd("status", pipeline_id, "--json")
    assert status_json.returncode == 3
    assert json.loads(status_json.stdout) == live.api.get(f"/pipelines/{pipeline_id}").json()
    assert live.publishd("follow", pipeline_id).returncode == 3
    retried = live.publishd("retry", pipeline_id, "--follow")  # the CMS refuses it again
    assert retried.returncode == 3, retried.stdout + retried.stderr
    assert "completed_with_errors" in retried.stdout or "failed" in retried.stdout

    again = live.publishd("run", pipeline_id, "--wait")  # not runnable any more: the API's 409
    assert again.returncode == 1
    assert one_error_line(again).startswith("error: ")
    again_json = live.publishd("run", pipeline_id, "--json")
    assert again_json.returncode == 1
    assert json.loads(again_json.stdout)["error"] == "conflict"
    one_error_line(again_json)


def test_publish_refuses_without_a_terminal_or_yes_and_plans_nothing(live: Live) -> None:
    live.write("books/fresh.json", {"title": "Fresh", "slug": "fresh"})
    for extra in ((), ("--json",)):
        done = live.publishd("publish", "lib", "alice", *extra)
        assert done.returncode == 1
        assert "--yes" in one_error_line(done)
    assert live.api.get("/pipelines").json()["pipelines"] == []


def _read_until(stream: Any, text: bytes, deadline: float) -> bytes:
    seen = b""
    while text not in seen:
        left = deadline - time.monotonic()
        assert left > 0, seen.decode()
        ready, _, _ = select.select([stream], [], [], left)
        if ready:
            chunk = os.read(stream.fileno(), 4096)
            assert chunk, seen.decode()  # the process ended without asking
            seen += chunk
    return seen


@contextlib.contextmanager
def publish_on_a_terminal(live: Live) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``publishd publish`` with stdin a pty (a person at a terminal); stdout a pipe."""
    controller, terminal = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "interfaces.cli", "publish", "lib", "alice", "--wait"],
        env=live.env,
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    os.close(terminal)
    try:
        yield proc, controller
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        os.close(controller)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.mark.parametrize(("answer", "runs"), [(b"y\n", True), (b"n\n", False), (b"\n", False)])
def test_publish_asks_on_a_terminal_and_runs_only_on_yes(
    live: Live, answer: bytes, runs: bool
) -> None:
    live.write("books/old.json", {"id": "b1", "title": "Asked", "slug": "old", "author": "a1"})
    with publish_on_a_terminal(live) as (proc, controller):
        shown = _read_until(proc.stdout, b"Run this plan? [y/N]", time.monotonic() + 60)
        assert 'title: "Old" → "Asked"'.encode() in shown
        assert proc.poll() is None  # waiting for the answer
        os.write(controller, answer)
        rest, err = proc.communicate(timeout=90)
    (pipeline,) = live.api.get("/pipelines").json()["pipelines"]
    if runs:
        assert proc.returncode == 0, err.decode()
        assert pipeline["state"] == "completed" and live.title("b1") == "Asked"
    else:
        assert proc.returncode == 1, err.decode()
        assert b"Not run" in rest and f"publishd run {pipeline['pipeline_id']}".encode() in rest
        assert pipeline["state"] == "planned" and live.title("b1") == "Old"


def test_pipelines_list_filters_and_env_settings_yield_to_flags(live: Live) -> None:
    live.write("books/fresh.json", {"title": "Fresh", "slug": "fresh"})
    planned = json.loads(live.publishd("plan", "lib", "alice", "--json").stdout)
    table = live.publishd("pipelines", "list", "--workspace", "lib", "--state", "planned")
    assert table.returncode == 0, table.stderr
    assert planned["pipeline_id"] in table.stdout and "planned" in table.stdout
    listed = live.publishd("pipelines", "list", "--state", "completed", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == {"pipelines": []}
    assert live.publishd("pipelines", "list", "--state", "nonsense").returncode == 1

    dead = {"PUBLISHD_URL": "http://127.0.0.1:9"}
    by_flag = live.publishd("status", planned["pipeline_id"], "--url", live.url, env=dead)
    assert by_flag.returncode == 0, by_flag.stderr  # --url wins over PUBLISHD_URL
    unreachable = live.publishd("status", planned["pipeline_id"], env=dead)
    assert "cannot reach publishd at http://127.0.0.1:9" in one_error_line(unreachable)
    wrong = live.publishd("status", planned["pipeline_id"], "--token", "not-a-token")
    assert wrong.returncode == 1 and "PUBLISHD_TOKEN" in one_error_line(wrong)


def _dead_url() -> str:
    import socket

    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize(
    "command",
    [
        ["plan", "ws", "u"],
        ["publish", "ws", "u", "--yes"],
        ["run", "p", "--wait"],
        ["status", "p"],
        ["follow", "p"],
        ["cancel", "p"],
        ["pipelines", "list"],
        ["audit", "pipeline", "p"],
        ["audit", "export", "--workspace", "ws"],
    ],
)
@pytest.mark.parametrize("as_json", [False, True])
def test_a_dead_server_is_one_line_and_exit_1_never_a_traceback(
    command: list[str], as_json: bool
) -> None:
    url = _dead_url()
    wants_json = as_json and command[0] != "audit"  # (audit prints JSON anyway)
    args = [*command, "--url", url, *(["--json"] if wants_json else [])]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHD_")}
    done = run_cli(*args, env=env)
    assert done.returncode == 1
    line = one_error_line(done)
    assert line == f"error: cannot reach publishd at {url} (is it running? PUBLISHD_URL)"
    if wants_json:
        assert json.loads(done.stdout)["error"] == "unreachable"


def test_version_comes_from_the_package_metadata() -> None:
    done = run_cli("--version", env=dict(os.environ))
    assert (done.returncode, done.stdout.strip()) == (0, f"publishd {version('publishd')}")


def test_a_wrong_command_line_exits_1_not_2() -> None:
    done = run_cli("plan", "ws", "--detailed-exitcode", env=dict(os.environ))
    assert done.returncode == 1 and "error: the following arguments are required: user" in (
        done.stderr
    )
