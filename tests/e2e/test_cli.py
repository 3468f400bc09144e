"""The ``publishd`` command as scripts use it: real processes, real database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from infrastructure.postgres.database import Database
from infrastructure.postgres.tokens import TokenStore

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def env(database: Database, schema: str) -> dict[str, str]:
    return os.environ | {
        "PUBLISHD_DATABASE_URL": database.conninfo,
        "PUBLISHD_DB_SCHEMA": schema,
    }


def publishd(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "interfaces.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def create_workspace(database: Database, schema: str, workspace: str) -> None:
    from infrastructure.settings import Settings
    from interfaces.bootstrap import Runtime

    runtime = Runtime.build(Settings(database_url=database.conninfo, db_schema=schema))
    try:
        runtime.app.create_workspace(workspace, {"type": "sandbox", "base_url": "http://x"})
    finally:
        runtime.close()


def test_tokens_create_prints_a_working_token_alone_on_the_last_line(
    env: dict[str, str], database: Database, schema: str
) -> None:
    create_workspace(database, schema, "acme")
    done = publishd(env, "tokens", "create", "--workspace", "acme", "--scopes", "read,publish")
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip().splitlines()[-1]
    store = TokenStore(database.conninfo, schema)
    store.open()
    try:
        principal = store.lookup(token)
    finally:
        store.close()
    assert principal is not None
    assert principal.workspace == "acme" and principal.scopes == frozenset({"read", "publish"})
    assert publishd(env, "tokens", "create", "--scopes", "read").returncode == 2
    assert publishd(env, "tokens", "create", "--workspace", "a", "--scopes", "root").returncode == 2


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["--workspace", "acme", "--scopes", "read,admin"], 2, "admin is not a scope"),
        (["--workspace", "acme", "--scopes", ","], 2, "at least one scope"),
        (["--workspace", "acme"], 2, "at least one scope"),
        (["--workspace", "WS;drop", "--scopes", "read"], 2, "not a valid workspace id"),
        (["--admin", "--workspace", "acme"], 2, "global token"),
        (["--workspace", "nowhere", "--scopes", "read"], 1, "workspace nowhere does not exist"),
    ],
)
def test_tokens_create_refuses_with_one_line_and_an_exit_code(
    env: dict[str, str], database: Database, schema: str, args: list[str], code: int, says: str
) -> None:
    if code == 1:
        create_workspace(database, schema, "acme")  # (the tables exist; nowhere does not)
    done = publishd(env, "tokens", "create", *args)
    assert (done.returncode, done.stdout) == (code, ""), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and says in done.stderr, done.stderr


def test_tokens_list_and_revoke_take_effect_at_once(
    env: dict[str, str], database: Database, schema: str
) -> None:
    import json

    create_workspace(database, schema, "acme")
    token = publishd(env, "tokens", "create", "--workspace", "acme", "--scopes", "read")
    secret = token.stdout.strip().splitlines()[-1]
    listed = publishd(env, "tokens", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert (row["workspace"], row["scopes"], row["admin"], row["revoked"]) == (
        "acme",
        ["read"],
        False,
        False,
    )
    assert secret not in listed.stdout
    store = TokenStore(database.conninfo, schema)
    store.open()
    try:
        assert store.lookup(secret) is not None
        assert publishd(env, "tokens", "revoke", str(row["id"])).returncode == 0
        assert store.lookup(secret) is None
    finally:
        store.close()
    again = publishd(env, "tokens", "revoke", str(row["id"]))
    assert again.returncode == 1 and "no live token" in again.stderr
    assert json.loads(publishd(env, "tokens", "list", "--json").stdout)[0]["revoked"] is True


def test_projections_verify_exits_1_on_drift_and_0_after_a_rebuild(
    env: dict[str, str], database: Database, schema: str
) -> None:
    from infrastructure.settings import Settings
    from interfaces.bootstrap import Runtime

    runtime = Runtime.build(Settings(database_url=database.conninfo, db_schema=schema))
    try:
        runtime.app.create_workspace("acme", {"type": "sandbox", "base_url": "http://x"})
        runtime.app.register_schema("acme", "books", {})
    finally:
        runtime.close()
    assert publishd(env, "projections", "rebuild").returncode == 0
    clean = publishd(env, "projections", "verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    with database.connect(autocommit=True) as conn:
        conn.execute(f'DELETE FROM "{schema}".file_reference_schemas')
    drift = publishd(env, "projections", "verify")
    assert drift.returncode == 1
    assert "file_reference_schemas" in drift.stdout
    assert publishd(env, "projections", "rebuild").returncode == 0
    assert publishd(env, "projections", "verify").returncode == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def server(env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "interfaces.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.05)  # polling a starting process: there is nothing to wait on
    try:
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_serve_answers_and_shuts_down_cleanly_on_sigterm_with_a_stream_open(
    server: tuple[subprocess.Popen[str], str], database: Database, schema: str
) -> None:
    proc, url = server
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{url}/workspaces/x").status_code == 401
    store = TokenStore(database.conninfo, schema)
    store.open()
    try:
        token = store.create_token(None, ["read"], admin=True)
    finally:
        store.close()
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/x-ndjson"}
    ended = threading.Event()
    opened = threading.Event()

    def follow() -> None:
        with httpx.stream("GET", f"{url}/events", headers=headers, timeout=None) as response:
            assert response.status_code == 200
            opened.set()
            for _ in response.iter_lines():
                pass
        ended.set()

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    assert opened.wait(20)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert time.monotonic() - started < 8  # well inside the 10 s grace: the stream was ended
    assert ended.wait(5)


def test_audit_shows_a_pipeline_at_a_past_version_and_exports_a_workspace(
    server: tuple[subprocess.Popen[str], str],
    env: dict[str, str],
    database: Database,
    schema: str,
) -> None:
    import json

    from infrastructure.settings import Settings
    from interfaces.bootstrap import Runtime

    runtime = Runtime.build(Settings(database_url=database.conninfo, db_schema=schema))
    try:
        runtime.app.create_workspace("acme", {"type": "sandbox", "base_url": "http://x"})
        runtime.app.register_schema("acme", "books", {})
        runtime.app.write_draft_file("acme", "ann", "books/a.json", {"title": "A"})
        pipeline = runtime.app.plan("acme", "ann")
        runtime.app.request_cancel(pipeline.pipeline_id)
        token = runtime.tokens.create_token("acme", ["read"])
    finally:
        runtime.close()

    then = publishd(env, "audit", "pipeline", pipeline.pipeline_id, "--version", "2")
    assert then.returncode == 0, then.stderr
    assert json.loads(then.stdout) | {"counts": None} == json.loads(then.stdout) | {
        "version": 2,
        "state": "planned",
        "counts": None,
    }
    now = json.loads(publishd(env, "audit", "pipeline", pipeline.pipeline_id).stdout)
    assert now["state"] == "cancelled" and now["version"] == 3

    _, url = server
    over_http = ("--url", url, "--token", token)
    for version in (("--version", "2"), ()):
        direct = publishd(env, "audit", "pipeline", pipeline.pipeline_id, *version)
        remote = publishd(env, "audit", "pipeline", pipeline.pipeline_id, *version, *over_http)
        assert remote.returncode == 0, remote.stderr
        assert json.loads(remote.stdout) == json.loads(direct.stdout)
    dead = f"http://127.0.0.1:{_free_port()}"  # (nothing listens there: --url is used)
    wrong = publishd(env, "audit", "pipeline", pipeline.pipeline_id, "--url", dead)
    assert (wrong.returncode, wrong.stdout) == (1, "")
    assert wrong.stderr.strip().splitlines() == [
        f"error: cannot reach publishd at {dead} (is it running? PUBLISHD_URL)"
    ]
    absent = publishd(env, "audit", "pipeline", "0" * 8 + "-0000-0000-0000-" + "0" * 12)
    assert absent.returncode == 1 and absent.stderr.startswith("error: pipeline "), absent.stderr
    assert "Traceback" not in absent.stderr

    export = publishd(env, "audit", "export", "--workspace", "acme", "--url", url, "--token", token)
    assert export.returncode == 0, export.stderr
    events = [json.loads(line) for line in export.stdout.splitlines()]
    types = [e["type"] for e in events]
    assert types[:2] == ["WorkspaceCreated", "SchemaRegistered"]
    assert {"DraftFileWritten", "PipelinePlanned", "EntryPlanned", "PipelineCancelled"} <= set(
        types
    )
    positions = [e["position"] for e in events]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
