"""SandboxConnector against the real sandbox over HTTP: happy paths, retries, classification."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from application.connector import EntryRejected, FatalConnectorError, TransientFailure
from infrastructure.connectors.rate_limit import RateLimiters
from infrastructure.sandbox.app import create_app
from infrastructure.sandbox.faults import FaultConfig
from tests.support.sandbox_side import SEED, SideDoor, connector, seeded_sandbox
from tests.support.servers import running_server

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sandbox() -> Iterator[SideDoor]:
    with seeded_sandbox() as door:
        yield door


class Sleeps:
    """An injected sleep that records the delays and yields without waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


# -- happy paths ------------------------------------------------------------------------


async def test_create_update_list_delete(sandbox: SideDoor) -> None:
    async with connector(sandbox.url) as c:
        created = await c.create("books", {"title": "New", "author": "a1"}, "k-create")
        assert created.field_data == {"title": "New", "author": "a1"}
        assert set(created.computed) == {"createdOn", "lastUpdated", "cdnUrl"}
        assert created.computed["cdnUrl"].endswith(f"/books/{created.id}")

        updated = await c.update("books", created.id, {"author": None}, "k-update")
        assert updated.id == created.id
        assert updated.field_data == {"title": "New", "author": None}

        page = await c.list_page("books", 0, 100)
        assert page.total == 2
        assert [r.id for r in page.records] == ["b1", created.id]
        assert page.records[1] == updated

        await c.delete_many("books", ["b1", created.id], "k-delete")
        assert sandbox.ids("books") == []


async def test_folders_with_slashes_and_paging(sandbox: SideDoor) -> None:
    async with connector(sandbox.url) as c:
        ids = [(await c.create("site1/menus", {"n": n}, f"m{n}")).id for n in range(7)]
        first = await c.list_page("site1/menus", 0, 4)
        rest = await c.list_page("site1/menus", 4, 4)
        assert first.total == rest.total == 7
        assert [r.id for r in first.records + rest.records] == ids


async def test_delete_many_accepts_a_full_page_and_refuses_more(sandbox: SideDoor) -> None:
    async with connector(sandbox.url, concurrency=16) as c:
        records = await asyncio.gather(*(c.create("authors", {}, f"a{n}") for n in range(101)))
        ids = [r.id for r in records]
        with pytest.raises(ValueError):
            await c.delete_many("authors", ids, "too-many")
        await c.delete_many("authors", ids[:100], "page-1")
        assert sandbox.ids("authors") == ["a1", ids[100]]


class InFlight:
    """ASGI middleware: the most requests the sandbox handled at once, and over how many sockets."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.now = self.peak = 0
        self.sockets: set[tuple[str, int]] = set()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_admin"):
            await self.app(scope, receive, send)
            return
        self.sockets.add(tuple(scope["client"]))
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await self.app(scope, receive, send)
        finally:
            self.now -= 1


@pytest.mark.parametrize("concurrency", [1, 5])
async def test_concurrency_bound_and_keep_alive(concurrency: int) -> None:
    """Never more than ``concurrency`` calls at once, over that many reused connections."""
    counter = InFlight(create_app(SEED, FaultConfig(latency_ms=20)))
    with running_server(counter) as url:
        async with connector(url, concurrency=concurrency) as c:
            records = await asyncio.gather(
                *(c.create("authors", {"n": n}, f"k{n}") for n in range(4 * concurrency))
            )
            await asyncio.gather(*(c.list_page("authors", 0, 1) for _ in range(2 * concurrency)))
    assert len({r.id for r in records}) == 4 * concurrency
    assert counter.peak == concurrency
    assert len(counter.sockets) == concurrency


# -- the HTTP/1.1 client under the connector --------------------------------------------


Answer = Callable[[bytes], Awaitable[bytes | None]]


@contextlib.asynccontextmanager
async def raw_server(answer: Answer, *, close_after: bool = False) -> AsyncIterator[Any]:
    """A bare TCP server: ``answer`` maps each request head to the bytes sent back.

    ``close_after`` closes the connection after every answer without saying
    so (no ``Connection: close``), like a server dropping an idle keep-alive;
    an HTTP/1.0 answer without a length is ended by closing, as HTTP says.
    """
    connections: list[int] = []
    handlers: set[asyncio.Task[Any]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(_header_value(head, b"content-length") or 0)
                await reader.readexactly(length)
                reply = await answer(head)
                if reply is None:
                    return
                writer.write(reply)
                await writer.drain()
                if close_after or reply.startswith(b"HTTP/1.0"):
                    return
        except (asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield type("Raw", (), {"url": f"http://127.0.0.1:{port}", "connections": connections})()
    finally:
        server.close()
        # Since Python 3.12.1 wait_closed() also waits for every open connection's
        # handler: one still waiting to answer (a silent server) must be ended first.
        for handler in handlers:
            handler.cancel()
        await server.wait_closed()


def _header_value(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


PAGE = b'{"items": [], "total": 0}'


async def fixed(head: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(PAGE), PAGE)


async def test_a_connection_the_server_dropped_is_replaced_not_failed() -> None:
    async with (
        raw_server(fixed, close_after=True) as raw,
        connector(raw.url, concurrency=1, max_retries=0) as c,
    ):
        for _ in range(3):
            assert (await c.list_page("authors", 0, 1)).total == 0
    assert len(raw.connections) == 3


async def test_chunked_and_read_to_close_bodies() -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunked += b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (PAGE[:5], PAGE[5:]))
    chunked += b"0\r\n\r\n"
    until_close = b"HTTP/1.0 200 OK\r\n\r\n" + PAGE
    replies = iter([chunked, chunked, until_close, chunked])

    async def answer(head: bytes) -> bytes:
        return next(replies)

    async with raw_server(answer) as raw, connector(raw.url, concurrency=1, max_retries=0) as c:
        for _ in range(4):
            assert (await c.list_page("authors", 0, 1)).total == 0
    assert len(raw.connections) == 2  # kept alive through the chunked ones, not after close


async def test_a_silent_server_is_a_timeout_then_transient() -> None:
    never = asyncio.Event()

    async def hang(head: bytes) -> bytes | None:
        await never.wait()
        return None

    async with (
        raw_server(hang) as raw,
        connector(raw.url, concurrency=2, max_retries=1, timeout=0.2) as c,
    ):
        with pytest.raises(TransientFailure, match="ReadTimeout"):
            await c.list_page("authors", 0, 1)
    assert len(raw.connections) == 2  # a timed-out connection is never reused


async def test_a_garbled_answer_is_transient() -> None:
    async def garbage(head: bytes) -> bytes:
        return b"SMTP ready\r\n\r\n"

    async with raw_server(garbage) as raw, connector(raw.url, max_retries=1) as c:
        with pytest.raises(TransientFailure, match="RemoteProtocolError"):
            await c.create("authors", {}, "k")


async def test_header_values_cannot_smuggle_headers(sandbox: SideDoor) -> None:
    async with connector(sandbox.url) as c:
        with pytest.raises(ValueError):
            await c.create("authors", {}, "k\r\nX-Evil: 1")
    assert sandbox.stats().get("requests", 0) == 0


# -- retries ------------------------------------------------------------------------------


async def test_retries_through_503s(sandbox: SideDoor) -> None:
    sandbox.faults(fail_rate=0.5, seed=3)
    async with connector(sandbox.url, max_retries=10) as c:
        for n in range(20):
            await c.create("authors", {"n": n}, f"k{n}")
    stats = sandbox.stats()
    assert stats["creates"] == 20
    assert stats["failed"] > 0
    assert stats["requests"] == 20 + stats["failed"]
    sandbox.faults()
    assert len(sandbox.ids("authors")) == 21


async def test_429_waits_at_least_retry_after(sandbox: SideDoor) -> None:
    sandbox.faults(rate_limit_429_rate=0.5, retry_after_s=2, seed=5)
    sleeps = Sleeps()
    async with connector(sandbox.url, max_retries=10, sleep=sleeps) as c:
        for n in range(10):
            await c.create("authors", {}, f"k{n}")
    stats = sandbox.stats()
    assert stats["creates"] == 10
    assert len(sleeps.delays) == stats["rate_limited"] > 0
    assert min(sleeps.delays) >= 2


async def test_lost_responses_are_retried_without_duplicates(sandbox: SideDoor) -> None:
    sandbox.faults(lost_response_rate=0.5, seed=11)
    async with connector(sandbox.url, max_retries=10) as c:
        created = [await c.create("authors", {"n": n}, f"k{n}") for n in range(10)]
    stats = sandbox.stats()
    assert stats["creates"] == 10
    assert stats["duplicates"] == stats["lost_responses"] > 0
    assert sandbox.ids("authors") == ["a1", *(r.id for r in created)]


async def test_backoff_is_exponential_and_capped(sandbox: SideDoor) -> None:
    sandbox.faults(lost_response_rate=1.0)
    sleeps = Sleeps()
    options = {"backoff_base": 0.5, "backoff_max": 1.5, "jitter": lambda: 1.0, "sleep": sleeps}
    async with connector(sandbox.url, max_retries=4, **options) as c:
        with pytest.raises(TransientFailure):
            await c.create("authors", {}, "k")
    assert sleeps.delays == [0.5, 1.0, 1.5, 1.5]


# -- what is left after the budget -------------------------------------------------------------


async def test_lost_responses_past_the_budget_are_transient_and_create_once(
    sandbox: SideDoor,
) -> None:
    sandbox.faults(lost_response_rate=1.0)
    async with connector(sandbox.url, max_retries=2) as c:
        with pytest.raises(TransientFailure) as failure:
            await c.create("authors", {}, "k")
    assert failure.value.status == 502
    stats = sandbox.stats()
    assert (stats["requests"], stats["creates"], stats["duplicates"]) == (3, 1, 2)


async def test_429s_past_the_budget_are_transient(sandbox: SideDoor) -> None:
    sandbox.faults(rate_limit_429_rate=1.0, retry_after_s=0)
    async with connector(sandbox.url, max_retries=3) as c:
        with pytest.raises(TransientFailure) as failure:
            await c.list_page("authors", 0, 10)
    assert failure.value.status == 429
    assert sandbox.stats()["requests"] == 4


async def test_outage_past_the_budget_is_fatal(sandbox: SideDoor) -> None:
    sandbox.faults(outage=True)
    async with connector(sandbox.url, max_retries=3) as c:
        with pytest.raises(FatalConnectorError) as failure:
            await c.create("authors", {}, "k")
    assert failure.value.status == 503
    assert sandbox.stats()["requests"] == 4
    sandbox.faults()
    assert sandbox.ids("authors") == ["a1"]


async def test_503s_while_other_calls_succeed_are_transient(sandbox: SideDoor) -> None:
    """A service that answers someone is up: only the unlucky entry fails."""
    sandbox.faults(fail_rate=1.0)
    retrying, gate = asyncio.Event(), asyncio.Event()

    async def sleep(seconds: float) -> None:
        retrying.set()
        await gate.wait()

    async with connector(sandbox.url, max_retries=1, sleep=sleep) as c:
        doomed = asyncio.create_task(c.create("authors", {}, "k"))
        await retrying.wait()
        sandbox.faults()
        await c.list_page("authors", 0, 1)
        sandbox.faults(fail_rate=1.0)
        gate.set()
        with pytest.raises(TransientFailure):
            await doomed


async def test_nothing_listening_is_fatal() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleeps = Sleeps()
    async with connector(f"http://127.0.0.1:{port}", max_retries=3, sleep=sleeps) as c:
        with pytest.raises(FatalConnectorError, match="ConnectError"):
            await c.create("authors", {}, "k")
    assert len(sleeps.delays) == 3


async def test_auth_rejected_is_fatal_at_once() -> None:
    with running_server(create_app(SEED, FaultConfig(auth_token="s3cret"))) as url:
        admin = SideDoor(url)
        async with connector(url, max_retries=5) as c:
            with pytest.raises(FatalConnectorError) as failure:
                await c.list_page("authors", 0, 10)
        assert failure.value.status == 401
        assert admin.stats()["requests"] == 1
        async with connector(url, auth_token="s3cret") as c:
            assert (await c.list_page("authors", 0, 10)).total == 1
        admin.http.close()


# -- rejected entries ---------------------------------------------------------------------------


async def test_missing_reference_is_rejected_with_details(sandbox: SideDoor) -> None:
    async with connector(sandbox.url) as c:
        with pytest.raises(EntryRejected) as rejected:
            await c.create("books", {"author": "ghost"}, "k")
    assert rejected.value.status == 400
    assert rejected.value.details["code"] == "validation_error"
    assert rejected.value.details["missing"] == ["ghost"]
    assert "missing" in rejected.value.message
    assert sandbox.stats()["requests"] == 1


async def test_delete_of_referenced_record_is_rejected_with_conflicts(sandbox: SideDoor) -> None:
    async with connector(sandbox.url) as c:
        with pytest.raises(EntryRejected) as rejected:
            await c.delete_many("authors", ["a1"], "k")
    assert rejected.value.status == 409
    assert rejected.value.details["conflicts"] == [
        {"id": "a1", "referencedBy": [{"collection": "books", "id": "b1"}]}
    ]
    assert sandbox.ids("authors") == ["a1"]


async def test_unknown_folder_and_record_are_rejected(sandbox: SideDoor) -> None:
    async with connector(sandbox.url) as c:
        with pytest.raises(EntryRejected) as folder:
            await c.create("ghosts", {}, "k1")
        with pytest.raises(EntryRejected) as record:
            await c.update("authors", "nope", {}, "k2")
    assert folder.value.status == record.value.status == 404


# -- rate limiting -------------------------------------------------------------------------------


async def test_connectors_sharing_credentials_share_one_limiter_and_meet_no_429(
    sandbox: SideDoor,
) -> None:
    """Two runs on one key: paced together to the service's limit, neither is refused."""
    limit, window, calls = 10, 0.5, 35
    sandbox.faults(rate_limit=limit, rate_window_s=window)
    limiters = RateLimiters()
    shared = limiters.for_credentials(sandbox.url, limit, window)
    assert limiters.for_credentials(sandbox.url, limit, window) is shared
    async with (
        connector(sandbox.url, rate_limiter=shared) as one,
        connector(sandbox.url, rate_limiter=shared) as two,
    ):
        started = time.perf_counter()
        await asyncio.gather(
            *(c.list_page("authors", 0, 1) for n in range(calls) for c in [(one, two)[n % 2]])
        )
        elapsed = time.perf_counter() - started
    stats = sandbox.stats()
    assert stats.get("rate_limited", 0) == 0
    assert stats["requests"] == calls
    assert elapsed >= (calls // limit) * window  # three full windows waited
