"""``publishd serve`` in a process of its own, for tests that measure the server alone.

Its RSS, file descriptors and event loop are its own, so what a test measures
is the server's, not the test's (in-process servers share the test's GIL).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from infrastructure.postgres.database import Database
from interfaces.bootstrap import Runtime


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    admin: str
    log: Path

    def open_streams(self) -> int:
        text = httpx.get(
            f"{self.url}/metrics", headers={"Authorization": f"Bearer {self.admin}"}, timeout=5
        ).text
        for line in text.splitlines():
            if line.startswith("publishd_open_streams "):
                return int(float(line.split()[1]))
        raise AssertionError("no publishd_open_streams in /metrics")


@contextlib.contextmanager
def serve_process(
    database: Database, schema: str, runtime: Runtime, tmp_path: Path, env: dict[str, str]
) -> Iterator[Server]:
    """``publishd serve`` on ``schema`` with ``env`` on top, up once ``/healthz`` answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    environment = os.environ | {
        "PUBLISHD_DATABASE_URL": database.conninfo,
        "PUBLISHD_DB_SCHEMA": schema,
        **env,
    }
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "interfaces.cli", "serve", "--port", str(port)],
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    admin = runtime.tokens.create_token(None, [], admin=True)
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.05)  # polling a starting process: there is nothing to wait on
    try:
        yield Server(process, url, admin, tmp_path / "serve.log")
    finally:
        process.kill()
        process.wait(timeout=10)
        log.close()
