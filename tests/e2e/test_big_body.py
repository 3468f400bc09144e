"""A big body does not freeze the server: ``/healthz`` answers meanwhile.

A body's cost grows with its values: 1.7 M tiny ones in 3.4 MB would hold
the GIL (C decoders and encoders) for far too long, so a body with more than
``MAX_VALUES`` is refused before decoding; the biggest body allowed is
decoded and checked off the event loop. The server runs in its own process:
its event loop and GIL are not the test's.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infrastructure.postgres.database import Database
from interfaces.bootstrap import Runtime
from interfaces.http.parsing import MAX_VALUES
from tests.support.serve_process import Server, serve_process

pytestmark = pytest.mark.timeout(60)

HEALTHZ_LIMIT_MS = 100


@pytest.fixture
def server(database: Database, schema: str, runtime: Runtime, tmp_path: Path) -> Iterator[Server]:
    with serve_process(database, schema, runtime, tmp_path, {}) as server:
        yield server


def healthz_ms(host: str, port: int) -> float:
    started = time.monotonic()
    conn = http.client.HTTPConnection(host, port, timeout=5)
    conn.request("GET", "/healthz")
    assert conn.getresponse().status == 200
    conn.close()
    return (time.monotonic() - started) * 1000


def timed_while_sending(server: Server, token: str, body: bytes) -> tuple[int, list[float]]:
    """The body's answer, and /healthz's times while it was being processed."""
    host, port = server.url.removeprefix("http://").split(":")
    answer: list[int] = []

    def send() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request(
            "PUT",
            "/workspaces/acme/drafts/alice/files/books/big.json",
            body=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        answer.append(conn.getresponse().status)
        conn.close()

    sender = threading.Thread(target=send)
    sender.start()
    times = []
    while sender.is_alive():
        times.append(healthz_ms(host, int(port)))
    sender.join(30)
    return answer[0], times


def test_healthz_answers_while_big_bodies_are_processed(server: Server, runtime: Runtime) -> None:
    token = runtime.tokens.create_token("acme", ["write"])
    # 1.7 M tiny values in 3.4 MB: refused before any of them is decoded
    pathological = b'{"a": [' + b",".join([b"0"] * 1_700_000) + b"]}"
    status, times = timed_while_sending(server, token, pathological)
    assert status == 422
    assert max(times, default=0) < HEALTHZ_LIMIT_MS, sorted(times)[-5:]
    # the most a body may hold, in nearly 5 MB: decoded, checked, recorded, echoed
    values = ",".join([f'"{n:022d}"' for n in range(MAX_VALUES - 1)])
    status, times = timed_while_sending(server, token, f'{{"a": [{values}]}}'.encode())
    assert status == 200
    assert len(times) >= 3, "the body was processed before /healthz could be timed"
    assert max(times) < HEALTHZ_LIMIT_MS, sorted(times)[-5:]
