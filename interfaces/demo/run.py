"""``make run`` (``publishd run-local``) and ``publishd demo``.

Both start the sandbox CMS and publishd on the configured database (the
embedded one by default), load the sample workspace through the HTTP API, and
then either keep serving and print copy-paste commands (run-local), or plan,
run and follow the publish in the terminal and stop (demo).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from rich.console import Console

from infrastructure.settings import Settings
from interfaces.bootstrap import Runtime, build_http_app
from interfaces.client import Client, ClientError, follow
from interfaces.demo import sample_data
from interfaces.server import local_admin_token

WORKSPACE = "demo"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_or_free(port: int) -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return _free_port()
    return port


def _wait_until_up(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


@contextmanager
def sandbox_process(port: int) -> Iterator[str]:
    seed = Path(tempfile.mkdtemp()) / "seed.json"
    seed.write_text(json.dumps(sample_data.SEED))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "interfaces.cli",
            "sandbox",
            "serve",
            "--port",
            str(port),
            "--seed",
            str(seed),
        ],
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(f"{url}/collections")
        for name, definition in sample_data.SANDBOX_COLLECTIONS.items():
            httpx.put(f"{url}/collections/{name}", json=definition).raise_for_status()
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def publishd_thread(runtime: Runtime, port: int) -> Iterator[str]:
    config = uvicorn.Config(
        build_http_app(runtime),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(f"{url}/healthz")
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def load_sample(client: Client, sandbox_url: str) -> None:
    """Create the sample workspace (once), pull main, and write the draft."""
    try:
        client.request(
            "POST",
            "/workspaces",
            json={"id": WORKSPACE, "connector": {"type": "sandbox", "base_url": sandbox_url}},
        )
    except ClientError as exc:
        if exc.status != 409:
            raise
        # the workspace outlived an earlier sandbox: point it at this one
        client.request(
            "PUT",
            f"/workspaces/{WORKSPACE}/connector",
            json={"type": "sandbox", "base_url": sandbox_url},
        )
    for folder, schema in sample_data.SCHEMAS.items():
        client.request("PUT", f"/workspaces/{WORKSPACE}/schemas/{folder}", json=schema)
    client.request("POST", f"/workspaces/{WORKSPACE}/pulls", params={"wait": "true"})
    draft = f"/workspaces/{WORKSPACE}/drafts/{sample_data.DRAFT_USER}"
    client.request("DELETE", draft)
    edited = client.request("GET", f"/workspaces/{WORKSPACE}/files/{sample_data.DRAFT_EDIT_PATH}")
    edited["title"] = edited["title"] + " (revised edition)"
    client.request("PUT", f"{draft}/files/{sample_data.DRAFT_EDIT_PATH}", json=edited)
    for path, content in sample_data.DRAFT_WRITES.items():
        client.request("PUT", f"{draft}/files/{path}", json=content)
    for path in sample_data.DRAFT_DELETES:
        client.request("DELETE", f"{draft}/files/{path}")


def run_demo(settings: Settings, *, local: bool) -> int:
    console = Console()
    runtime = Runtime.build(settings)
    token = local_admin_token(runtime)
    port = settings.port if local else _free_port()
    try:
        with (
            sandbox_process(_port_or_free(9100) if local else _free_port()) as sandbox_url,
            publishd_thread(runtime, port) as url,
        ):
            client = Client(url, token)
            load_sample(client, sandbox_url)
            if local:
                _announce(console, url, token, sandbox_url)
                stop = threading.Event()
                signal.signal(signal.SIGINT, lambda *_: stop.set())
                signal.signal(signal.SIGTERM, lambda *_: stop.set())
                stop.wait()
                return 0
            return _tell_the_story(console, client)
    finally:
        runtime.close()


def _announce(console: Console, url: str, token: str, sandbox_url: str) -> None:
    draft = f"{url}/workspaces/{WORKSPACE}/drafts/{sample_data.DRAFT_USER}"
    auth = '-H "Authorization: Bearer $TOKEN"'
    console.print(
        f"""
[bold]publishd[/bold] is running at [cyan]{url}[/cyan] (sandbox CMS at {sandbox_url})
admin token: [green]{token}[/green]

console: [cyan]{url}/[/cyan]  (open it in a browser, sign in with the admin token)
API reference: {url}/docs

The sample workspace '{WORKSPACE}' has a draft by '{sample_data.DRAFT_USER}' that needs all four
phases. Try:

  export TOKEN={token}
  curl -s {auth} {draft}/changes
  curl -s -X POST {auth} {draft}/plans            # note the pipeline_id
  curl -N {auth} {url}/pipelines/PIPELINE_ID/events &   # live progress (SSE)
  curl -s -X POST {auth} {url}/pipelines/PIPELINE_ID/run
  curl -s {auth} {url}/pipelines/PIPELINE_ID
  curl -s {auth} '{url}/workspaces/{WORKSPACE}/events?follow=false'   # the audit trail

or with the CLI:
  .venv/bin/publishd publish {WORKSPACE} {sample_data.DRAFT_USER} --follow \\
      --url {url} --token $TOKEN

Ctrl-C stops it; data stays in {Settings().data_dir}.
""",
        soft_wrap=True,
    )


def _tell_the_story(console: Console, client: Client) -> int:
    draft = f"/workspaces/{WORKSPACE}/drafts/{sample_data.DRAFT_USER}"
    changes = client.request("GET", f"{draft}/changes")
    console.print("[bold]The draft:[/bold]")
    for change in changes["changes"]:
        console.print(f"  {change['change']:>8}  {change['path']}")
    plan = client.request("POST", f"{draft}/plans")
    console.print(f"\n[bold]The plan[/bold] {plan['pipeline_id']}:")
    for entry in plan["entries"]:
        deferred = (
            f"  (deferred: {', '.join(entry['deferred_fields'])})"
            if entry["deferred_fields"]
            else ""
        )
        console.print(f"  {entry['phase']:>8}  {entry['path']}{deferred}")
    console.print()
    client.request("POST", f"/pipelines/{plan['pipeline_id']}/run")
    status = follow(client, plan["pipeline_id"], False, console)
    return 0 if status["state"] == "completed" else 1
