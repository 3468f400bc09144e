"""The real processes behind the browser tests: ``publishd serve`` and sandbox CMSes.

``publishd serve`` runs on its own PostgreSQL schema for the whole session and
can be killed with SIGKILL and started again on the same port (the stream-cut
test); each test gets a fresh sandbox process seeded with the demo's sample
library and a fresh workspace over it, loaded through the HTTP API as ``make
run`` loads it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from interfaces.demo import sample_data

_CLI = (sys.executable, "-m", "interfaces.cli")
LEASE_SECONDS = "2"
"""A killed server's runs are taken over this soon by the next one."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(
    url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"{url} did not come up:\n{log.read_text()}"
        time.sleep(0.05)  # polling a starting process: there is nothing to wait on


@dataclass
class Publishd:
    """``publishd serve`` on the session's schema; ``restart`` kills it and starts another."""

    env: dict[str, str]
    port: int
    logs: Path
    admin_token: str = ""
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.url, timeout=30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        log = self.logs / f"serve-{self.starts}.log"
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "interfaces.cli", "serve", "--port", str(self.port)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_until_up(f"{self.url}/healthz", self.process, log)

    def kill(self) -> None:
        """SIGKILL: no shutdown, streams cut, in-flight work left to the next lease."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        self.http.close()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    # --- the API, as a test checks what the console shows ------------------------------
    def call(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.admin_token}", **kw.pop("headers", {})}
        response = self.http.request(method, path, headers=headers, **kw)
        assert response.status_code == status, (response.status_code, response.text)
        return response.json() if response.content else None

    def events(self, pipeline_id: str) -> list[dict[str, Any]]:
        """Every event of a finished pipeline, from its stream (NDJSON), in order."""
        headers = {"Authorization": f"Bearer {self.admin_token}", "Accept": "application/x-ndjson"}
        with self.http.stream("GET", f"/pipelines/{pipeline_id}/events", headers=headers) as r:
            assert r.status_code == 200
            return [json.loads(line) for line in r.iter_lines() if line.strip()]


def admin_token(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "interfaces.cli", "tokens", "create", "--admin"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


@dataclass
class Sandbox:
    url: str
    http: httpx.Client

    def faults(self, **options: Any) -> None:
        assert self.http.put("/_admin/faults", json=options).status_code == 200

    def define(self, collection: str, reference_fields: dict[str, Any]) -> None:
        response = self.http.put(
            f"/collections/{collection}", json={"referenceFields": reference_fields}
        )
        assert response.status_code == 200, response.text


@contextlib.contextmanager
def sandbox_process(logs: Path) -> Iterator[Sandbox]:
    """A sandbox CMS seeded with the sample library (``make run``'s), in its own process."""
    port = free_port()
    seed = logs / f"seed-{port}.json"
    seed.write_text(json.dumps(sample_data.SEED))
    log = logs / f"sandbox-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*_CLI, "sandbox", "serve", "--port", str(port), "--seed", str(seed)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/collections", process, log)
        with httpx.Client(base_url=url, timeout=10) as http:
            sandbox = Sandbox(url, http)
            for name, definition in sample_data.SANDBOX_COLLECTIONS.items():
                sandbox.define(name, definition["referenceFields"])
            yield sandbox
    finally:
        process.terminate()
        process.wait(timeout=10)


def load_library(publishd: Publishd, sandbox: Sandbox) -> str:
    """A fresh workspace over ``sandbox``, pulled, with the sample's four-phase draft by alice."""
    ws = f"lib-{uuid.uuid4().hex[:8]}"
    publishd.call(
        "POST",
        "/workspaces",
        201,
        json={"id": ws, "connector": {"type": "sandbox", "base_url": sandbox.url}},
    )
    for folder, schema in sample_data.SCHEMAS.items():
        publishd.call("PUT", f"/workspaces/{ws}/schemas/{folder}", json=schema)
    publishd.call("POST", f"/workspaces/{ws}/pulls", params={"wait": "true"})
    draft = f"/workspaces/{ws}/drafts/{sample_data.DRAFT_USER}"
    edited = publishd.call("GET", f"/workspaces/{ws}/files/{sample_data.DRAFT_EDIT_PATH}")
    edited["title"] += " (revised edition)"
    publishd.call("PUT", f"{draft}/files/{sample_data.DRAFT_EDIT_PATH}", json=edited)
    for path, content in sample_data.DRAFT_WRITES.items():
        publishd.call("PUT", f"{draft}/files/{path}", json=content)
    for path in sample_data.DRAFT_DELETES:
        publishd.call("DELETE", f"{draft}/files/{path}", 204)
    return ws


def server_env(database_url: str, schema: str) -> dict[str, str]:
    return os.environ | {
        "PUBLISHD_DATABASE_URL": database_url,
        "PUBLISHD_DB_SCHEMA": schema,
        "PUBLISHD_LEASE_SECONDS": LEASE_SECONDS,
        "PUBLISHD_RATE_LIMIT": "1000",
        "PUBLISHD_RATE_LIMIT_BURST": "2000",
    }
