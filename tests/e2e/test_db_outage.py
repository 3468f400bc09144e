"""PostgreSQL stopped in the middle of a run and started again, under a real ``publishd serve``.

The test owns its PostgreSQL (an embedded server in a temporary directory, not
the shared one) so that it can stop it. While it is down every request gets a
503 ``unavailable`` quickly (auth's token lookup, a query, a ticket, /readyz);
once it is back the run completes by itself, nothing is sent or recorded twice
(bench.reliability's checks against the sandbox's own records), the
projections equal a replay from scratch (none lost or applied twice), a stream that
stayed connected saw every event once, and a stream resumed with
``Last-Event-ID`` from where a client left during the outage has no gap and no
duplicate.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from bench.reliability import Shape, TrialResult, check, lab, sandbox, setup_main, write_draft
from infrastructure.postgres.database import Database, embedded, embedded_stopped, stop_embedded
from infrastructure.postgres.projections.verify import verify
from tests.api.stream_support import parse_sse
from tests.support.serve_process import Server, serve_process

pytestmark = pytest.mark.timeout(180)

SCHEMA = "outage"
LATENCY_MS = 250.0
"""Each sandbox request takes this long: the run spans the outage."""
OUTAGE_ANSWER_S = 8.0
"""How soon a request must be answered while the database is down (pool timeout 2 s)."""
TERMINAL = {"PipelineCompleted", "PipelineFailed", "PipelineCancelled"}


@pytest.fixture
def own_data_dir() -> Iterator[Path]:
    """Not under pytest's tmp tree (as in tests/conftest.py): another pytest session starting
    makes that 0700, and the embedded server runs as a user who must traverse the path."""
    data_dir = Path(tempfile.mkdtemp(prefix="publishd-outage-"))
    try:
        yield data_dir
    finally:
        stop_embedded(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def own_database(own_data_dir: Path) -> Database:
    return embedded(own_data_dir)


@dataclass
class Reader:
    """Reads a pipeline's SSE stream in a thread, from ``after``; keeps every id."""

    url: str
    token: str
    after: int = 0
    ids: list[int] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    error: BaseException | None = None
    leave: threading.Event = field(default_factory=threading.Event)

    def start(self, pipeline_id: str) -> Reader:
        self.thread = threading.Thread(target=self._run, args=(pipeline_id,), daemon=True)
        self.thread.start()
        return self

    def _run(self, pipeline_id: str) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        if self.after:
            headers["Last-Event-ID"] = str(self.after)
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(10, read=60)) as client,
                client.stream(
                    "GET", f"{self.url}/pipelines/{pipeline_id}/events", headers=headers
                ) as response,
            ):
                assert response.status_code == 200, response.status_code
                for event in parse_sse(self._lines(response)):
                    self.ids.append(event.id)
                    self.types.append(event.event)
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    def _lines(self, response: httpx.Response) -> Iterator[str]:
        for line in response.iter_lines():
            if self.leave.is_set():
                return  # a client that goes away (its network failed, say)
            yield line

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the stream did not end"
        assert self.error is None, self.error


def wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.05)


def timed(client: httpx.Client, method: str, path: str, **kwargs: object) -> httpx.Response:
    started = time.monotonic()
    response = client.request(method, path, **kwargs)  # type: ignore[arg-type]
    assert time.monotonic() - started < OUTAGE_ANSWER_S, (path, time.monotonic() - started)
    return response


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, (response.status_code, response.text)
    body = response.json()
    assert body["error"] == "unavailable" and body["message"], body
    assert "Retry-After" in response.headers


def test_a_run_survives_the_database_going_away_and_streams_lose_nothing(
    own_database: Database, own_data_dir: Path, tmp_path: Path
) -> None:
    shape = Shape(books=6)
    with lab(own_database, SCHEMA) as runtime, sandbox(0) as box:
        ids = setup_main(runtime, box, "acme", shape)
        write_draft(runtime, "acme", shape)
        pipeline = runtime.app.plan("acme", "alice")
        pipeline_id = pipeline.pipeline_id
        token = runtime.tokens.create_token("acme", ["read", "write", "publish"])
        env = {"PUBLISHD_DATABASE_TIMEOUT_SECONDS": "2", "PUBLISHD_LEASE_SECONDS": "3"}
        with (
            serve_process(own_database, SCHEMA, runtime, tmp_path, env) as server,
            httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
            ) as client,
        ):
            staying = Reader(server.url, token).start(pipeline_id)
            leaving = Reader(server.url, token).start(pipeline_id)
            wait_for(lambda: len(staying.ids) >= 2 and len(leaving.ids) >= 2, 20, "replays")
            box.call("DELETE", "/_admin/stats")
            box.call("PUT", "/_admin/faults", json={"latency_ms": LATENCY_MS})
            assert client.post(f"/pipelines/{pipeline_id}/run").status_code == 202
            wait_for(lambda: box.requests() >= 1, 30, "the run's first request")

            with embedded_stopped(own_data_dir):
                assert not TERMINAL & set(staying.types), "the run ended before the outage"
                leaving.leave.set()  # this client leaves during the outage
                during_outage(server, client, pipeline_id)

            leaving.join(30)
            wait_for(lambda: state(client, pipeline_id) == "completed", 90, "the run to complete")
            staying.join(30)
            assert_ready(server)

            resumed = Reader(server.url, token, after=leaving.ids[-1]).start(pipeline_id)
            resumed.join(30)

        version = runtime.app.pipeline(pipeline_id).version
        everything = list(range(1, version + 1))
        assert staying.ids == everything
        assert leaving.ids + resumed.ids == everything
        assert resumed.types[-1] == "PipelineCompleted"

        runtime.app.catch_up()  # projections, through the outage: as a replay from scratch
        report = verify(own_database, SCHEMA, events_table=runtime.events_table)
        assert report.ok, report.differences

        box.call("PUT", "/_admin/faults", json={"latency_ms": 0})
        result = TrialResult(entries=len(pipeline.entries))
        check(runtime, box, "acme", shape, ids, pipeline_id, result)
        assert result.problems == []
        assert (result.duplicate_creates, result.lost_outcomes, result.unfinished) == (0, 0, 0)


def during_outage(server: Server, client: httpx.Client, pipeline_id: str) -> None:
    """Every kind of request is a quick 503, never a 500 or a hang."""
    for _ in range(3):  # the first finds the outage; the others are refused at once
        assert_unavailable(timed(client, "GET", f"/pipelines/{pipeline_id}"))
    assert_unavailable(timed(client, "GET", "/workspaces/acme/files/books/book-0.json"))
    assert_unavailable(timed(client, "POST", "/stream-tickets"))
    assert_unavailable(timed(client, "GET", f"/pipelines/{pipeline_id}/events?ticket=nope"))
    unknown = {"Authorization": "Bearer pd_not-a-token"}
    assert_unavailable(timed(client, "GET", "/workspaces/acme", headers=unknown))
    ready = timed(client, "GET", "/readyz")
    assert ready.status_code == 503, ready.text
    assert ready.json()["status"] == "unavailable"
    assert ready.json()["checks"]["database"] == "unavailable"
    assert timed(client, "GET", "/healthz").status_code == 200  # alive, though not ready


def state(client: httpx.Client, pipeline_id: str) -> str:
    response = client.get(f"/pipelines/{pipeline_id}")
    if response.status_code == 503:
        return "unavailable"  # the first requests after the restart may still find it away
    assert response.status_code == 200, response.text
    return str(response.json()["state"])


def assert_ready(server: Server) -> None:
    def ready() -> bool:
        response = httpx.get(f"{server.url}/readyz", timeout=10)
        if response.status_code == 200:
            assert response.json()["checks"]["database"] == "ok"
            return True
        return False

    wait_for(ready, 30, "/readyz to say ready")
