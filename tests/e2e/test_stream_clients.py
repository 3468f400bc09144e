"""Greedy stream clients against a real ``publishd serve``: real sockets, the server's own RSS.

Many clients open a stream (SSE and NDJSON) and never read, while events of a
few KB are written. Each stalled client must cost a bounded amount while it is
connected and be dropped once a send has waited ``PUBLISHD_STREAM_SEND_TIMEOUT_SECONDS``;
a client that reads gets every event, in order. The server runs in its own
process, so ``/proc/<pid>/status`` measures it alone.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from infrastructure.postgres.database import Database
from interfaces.bootstrap import Runtime
from tests.api.stream_support import parse_sse
from tests.support.serve_process import Server, serve_process

pytestmark = pytest.mark.timeout(60)

SEND_TIMEOUT = 2.0
STALLED_SSE = 45
STALLED_NDJSON = 15
HISTORY = 300  # replayed to every client that connects
WRITES = 200  # written while they are connected
CONTENT_BYTES = 8_000
FD_SLACK = 15  # the reader's socket, a few more pool connections; 60 stalled sockets: +67
RSS_GROWTH_LIMIT_MB = 80  # measured: ~40 MB; the code before this limit: ~355 MB


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.02)


@pytest.fixture
def server(database: Database, schema: str, runtime: Runtime, tmp_path: Path) -> Iterator[Server]:
    env = {
        "PUBLISHD_STREAM_SEND_TIMEOUT_SECONDS": str(SEND_TIMEOUT),
        "PUBLISHD_RATE_LIMIT": "100000",  # this test opens its streams at once, on purpose
        "PUBLISHD_RATE_LIMIT_BURST": "100000",
    }
    with serve_process(database, schema, runtime, tmp_path, env) as server:
        yield server


def stalled_client(url: str, token: str, accept: str) -> socket.socket:
    """Sends its request and never reads; a tiny receive window fills at once."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(
        f"GET /workspaces/acme/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\nAccept: {accept}\r\n\r\n".encode()
    )
    return sock


@dataclass
class Reader:
    """A client that reads: records every event id as it arrives."""

    url: str
    token: str
    ids: list[int] = field(default_factory=list)
    error: BaseException | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            with (
                httpx.Client(timeout=30) as client,
                client.stream("GET", f"{self.url}/workspaces/acme/events", headers=headers) as r,
            ):
                assert r.status_code == 200
                for event in parse_sse(self._lines(r)):
                    self.ids.append(event.id)
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    def _lines(self, response: httpx.Response) -> Iterator[str]:
        for line in response.iter_lines():
            if self.stop.is_set():
                return
            yield line


def test_clients_that_never_read_are_dropped_and_cost_bounded_memory(
    server: Server, runtime: Runtime
) -> None:
    content = {"text": "x" * CONTENT_BYTES}

    def write(i: int) -> int:
        user = f"u{i % 25}"  # small drafts: a write's cost stays flat
        return runtime.app.write_draft_file("acme", user, f"books/b{i}.json", content)

    for i in range(HISTORY):
        write(i)
    token = runtime.tokens.create_token("acme", ["read"])
    before = rss_mb(server.process.pid)
    fds_before = open_fds(server.process.pid)
    reader = Reader(server.url, runtime.tokens.create_token("acme", ["read"]))
    stalled = [
        stalled_client(server.url, token, "text/event-stream") for _ in range(STALLED_SSE)
    ] + [stalled_client(server.url, token, "application/x-ndjson") for _ in range(STALLED_NDJSON)]
    try:
        everyone = STALLED_SSE + STALLED_NDJSON + 1
        wait_until(lambda: server.open_streams() == everyone, 15, "every stream open")
        peak = rss_mb(server.process.pid)  # each has its replay in hand by now
        last = 0
        for i in range(HISTORY, HISTORY + WRITES):
            last = write(i)
            if i % 20 == 0:
                peak = max(peak, rss_mb(server.process.pid))
        wait_until(lambda: bool(reader.ids) and reader.ids[-1] >= last, 15, "the reader caught up")
        peak = max(peak, rss_mb(server.process.pid))
        assert peak - before < RSS_GROWTH_LIMIT_MB, f"RSS {before:.0f} MB -> {peak:.0f} MB"
        # each stalled client blocked early on (a few frames fill a 4 KB window): all are
        # dropped at most a send timeout (and some slack for a busy machine) after the writes
        ended = time.monotonic()
        while (still := server.open_streams() - 1) > 0:
            waited = time.monotonic() - ended
            assert waited < SEND_TIMEOUT + 4, f"{still} stalled clients open {waited:.1f} s on"
            time.sleep(0.05)
        # and their sockets are cut off, though the clients still hold them open unread
        wait_until(
            lambda: open_fds(server.process.pid) <= fds_before + FD_SLACK,
            SEND_TIMEOUT + 4,
            f"the dropped clients' sockets closed ({fds_before} fds before them)",
        )
    finally:
        reader.stop.set()
        for sock in stalled:
            sock.close()
    assert reader.error is None, reader.error
    with httpx.Client(timeout=30) as client:
        replayed = client.get(
            f"{server.url}/workspaces/acme/events?follow=false",
            headers={"Authorization": f"Bearer {token}"},
        )
    written = [e.id for e in parse_sse(replayed.text.splitlines())]
    assert reader.ids == written  # every event, once, in order
    assert server.open_streams() == 1  # the reader's
    assert "Traceback" not in server.log.read_text()
