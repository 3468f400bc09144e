"""The event streams against real PostgreSQL: replay, live tail, resume, fan-out limits.

Finite streams (finished pipelines, ``follow=false``) use Starlette's TestClient;
endless ones use a real uvicorn server and httpx streaming, because an
in-process transport cannot be abandoned mid-stream.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from starlette.exceptions import StarletteDeprecationWarning

from domain.draft import Draft
from infrastructure.postgres.database import Database
from infrastructure.postgres.feed.event_feed import EventFeed
from tests.api.stream_support import (
    EventStore,
    Sse,
    StreamsApp,
    bearer,
    create_workspace,
    event_store,
    parse_sse,
    plan_pipeline,
    run_pipeline,
    run_steps,
    streams_app,
    write_draft,
)
from tests.support.servers import running_server

with warnings.catch_warnings():  # starlette asks for httpx2; httpx is what we have
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

TERMINAL = {"PipelineCompleted", "PipelineFailed", "PipelineCancelled", "PipelineStale"}


@pytest.fixture
def store(database: Database, schema: str) -> Iterator[EventStore]:
    store = event_store(database, schema)
    create_workspace(store, "acme")
    create_workspace(store, "other")
    yield store
    store.close()


def make_app(database: Database, store: EventStore, **options: Any) -> StreamsApp:
    return streams_app(database, store, **options)


def read_all(client: TestClient, url: str, headers: dict[str, str]) -> list[Sse]:
    with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(parse_sse(response.iter_lines()))


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


# --- replay (TestClient) --------------------------------------------------------
def test_finished_pipeline_replays_everything_and_closes_after_the_terminal_event(
    database: Database, store: EventStore
) -> None:
    pipeline = plan_pipeline(store, "acme", entries=3)
    run_pipeline(store, pipeline)
    s = make_app(database, store)
    with TestClient(s.app) as client:
        token = s.tokens.create_token("acme", ["read"])
        events = read_all(client, f"/pipelines/{pipeline.id}/events", bearer(token))
    assert [e.id for e in events] == list(range(1, pipeline.version + 1))
    assert events[0].event == "PipelinePlanned"
    assert events[-1].event == "PipelineCompleted"
    for e in events:
        assert e.data["type"] == e.event
        assert e.data["pipeline_id"] == str(pipeline.id)
        assert e.data["version"] == e.id
        assert e.data["workspace"] == "acme"
        assert e.data["timestamp"].startswith("20")
    published = [e.data for e in events if e.event == "EntryPublished"]
    assert {p["path"] for p in published} == {"books/b0.json", "books/b1.json", "books/b2.json"}


def test_resume_from_every_position_of_a_finished_pipeline_gives_exactly_the_rest(
    database: Database, store: EventStore
) -> None:
    pipeline = plan_pipeline(store, "acme", entries=2)
    run_pipeline(store, pipeline)
    last = pipeline.version
    s = make_app(database, store)
    with TestClient(s.app) as client:
        token = s.tokens.create_token("acme", ["read"])
        url = f"/pipelines/{pipeline.id}/events"
        full = read_all(client, url, bearer(token))
        for position in range(last + 1):
            by_header = read_all(client, url, {**bearer(token), "Last-Event-ID": str(position)})
            assert by_header == full[position:], position
        by_query = read_all(client, f"{url}?after=4", bearer(token))
        assert by_query == full[4:]


def test_ndjson_gives_the_same_events(database: Database, store: EventStore) -> None:
    pipeline = plan_pipeline(store, "acme", entries=2)
    run_pipeline(store, pipeline)
    s = make_app(database, store)
    with TestClient(s.app) as client:
        token = s.tokens.create_token("acme", ["read"])
        url = f"/pipelines/{pipeline.id}/events"
        sse = read_all(client, url, bearer(token))
        with client.stream(
            "GET", url, headers={**bearer(token), "Accept": "application/x-ndjson"}
        ) as response:
            assert response.headers["content-type"].startswith("application/x-ndjson")
            lines = [json.loads(line) for line in response.iter_lines() if line]
    assert lines == [e.data for e in sse]


def test_workspace_stream_replays_only_its_workspace_in_global_order_and_closes(
    database: Database, store: EventStore
) -> None:
    write_draft(store, "acme", "ann", files=2)
    write_draft(store, "other", "bob", files=2)
    run_pipeline(store, plan_pipeline(store, "other", entries=1))
    run_pipeline(store, plan_pipeline(store, "acme", entries=1))
    s = make_app(database, store)
    with TestClient(s.app) as client:
        admin = s.tokens.create_token(None, [], admin=True)
        everything = read_all(client, "/events?follow=false", bearer(admin))
        token = s.tokens.create_token("acme", ["read"])
        mine = read_all(client, "/workspaces/acme/events?follow=false", bearer(token))
        resumed = read_all(
            client, f"/workspaces/acme/events?follow=false&after={mine[3].id}", bearer(token)
        )
    assert [e.id for e in everything] == sorted(e.id for e in everything)
    assert {e.data["workspace"] for e in everything} == {"acme", "other"}
    assert mine == [e for e in everything if e.data["workspace"] == "acme"]
    assert {"WorkspaceCreated", "DraftStarted", "PipelinePlanned", "PipelineCompleted"} <= {
        e.event for e in mine
    }
    assert resumed == mine[4:]


def test_bad_resume_points_are_422_and_unknown_objects_404(
    database: Database, store: EventStore
) -> None:
    pipeline = plan_pipeline(store, "acme", entries=1)
    s = make_app(database, store)
    with TestClient(s.app) as client:
        token = bearer(s.tokens.create_token("acme", ["read"]))
        url = f"/pipelines/{pipeline.id}/events"
        for bad in ("-1", "abc", "1.5", "1e3", "99999999999999999999999999"):
            response = client.get(url, headers={**token, "Last-Event-ID": bad})
            assert response.status_code == 422, bad
            assert response.json()["error"] == "invalid_request"
        for bad in ("x", "\u0663", "-0"):
            response = client.get("/workspaces/acme/events", params={"after": bad}, headers=token)
            assert response.status_code == 422, bad
        for missing in (
            "/pipelines/0b5e3a5e-8d4b-4cdb-8f4e-1d1d1d1d1d1d/events",
            "/pipelines/not-a-uuid/events",
        ):
            response = client.get(missing, headers=token)
            assert response.status_code == 404
            assert response.json()["error"] == "not_found"
        # a workspace id is not a pipeline
        admin = bearer(s.tokens.create_token(None, [], admin=True))
        workspace_id = read_all(client, "/events?follow=false", admin)[0].data["originator_id"]
        assert client.get(f"/pipelines/{workspace_id}/events", headers=admin).status_code == 404
        assert client.get("/workspaces/nope/events", headers=admin).status_code == 404


# --- live (a real server) -----------------------------------------------------------
class Reader:
    """Reads an SSE stream in a thread, recording events as they arrive.

    ``stop()`` ends an endless stream; it takes effect at the next line, so the
    app under test should ping often.
    """

    def __init__(self, url: str, headers: dict[str, str], stop_after: int | None = None) -> None:
        self.url, self.headers, self.stop_after = url, headers, stop_after
        self.events: list[Sse] = []
        self.ended = threading.Event()
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _lines(self, response: httpx.Response) -> Iterator[str]:
        for line in response.iter_lines():
            if self.stopping.is_set():
                return
            yield line

    def _run(self) -> None:
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(30.0)) as client,
                client.stream("GET", self.url, headers=self.headers) as response,
            ):
                assert response.status_code == 200
                for event in parse_sse(self._lines(response)):
                    self.events.append(event)
                    if self.stop_after is not None and len(self.events) >= self.stop_after:
                        return
        except BaseException as exc:  # surfaced by join()
            self.error = exc
        finally:
            self.ended.set()

    def stop(self) -> list[Sse]:
        self.stopping.set()
        return self.join()

    def join(self, timeout: float = 30.0) -> list[Sse]:
        assert self.ended.wait(timeout), "stream did not end"
        if self.error is not None:
            raise self.error
        return self.events


def test_live_pipeline_stream_tails_then_closes_and_matches_the_replay(
    database: Database, store: EventStore
) -> None:
    pipeline = plan_pipeline(store, "acme", entries=3)
    s = make_app(database, store)
    with running_server(s.app) as base:
        token = bearer(s.tokens.create_token("acme", ["read"]))
        url = f"{base}/pipelines/{pipeline.id}/events"
        reader = Reader(url, token)
        wait_until(lambda: len(reader.events) == pipeline.version)  # the replayed part
        for _ in run_steps(pipeline):
            store.save(pipeline)  # each save is one commit, delivered live
        live = reader.join()
        replayed = Reader(url, token).join()
    assert [e.id for e in live] == list(range(1, pipeline.version + 1))
    assert live[-1].event == "PipelineCompleted"
    assert live == replayed


def test_a_client_reconnecting_while_events_are_written_sees_every_event_once(
    database: Database, store: EventStore
) -> None:
    s = make_app(database, store)
    with running_server(s.app) as base:
        token = bearer(s.tokens.create_token("acme", ["read"]))
        url = f"{base}/workspaces/acme/events"
        admin = bearer(s.tokens.create_token(None, [], admin=True))
        drafts = 12
        total = 1 + drafts * 4  # WorkspaceCreated; per draft DraftStarted and 3 files

        turns = threading.Semaphore(0)

        def writer() -> None:  # one draft per reconnection: writes and reconnects interleave
            for i in range(drafts):
                assert turns.acquire(timeout=30)
                write_draft(store, "acme", f"user{i}", files=3)
                write_draft(store, "other", f"user{i}", files=1)

        thread = threading.Thread(target=writer)
        thread.start()
        seen: list[Sse] = []
        connections = 0
        while len(seen) < total:  # reconnect after every few events, mid-write
            last = {"Last-Event-ID": str(seen[-1].id)} if seen else {}
            turns.release()
            seen += Reader(url, {**token, **last}, stop_after=min(3, total - len(seen))).join()
            connections += 1
        thread.join()
        with httpx.Client() as client:
            response = client.get(f"{base}/events?follow=false", headers=admin)
            everything = list(parse_sse(response.text.splitlines()))
        written = [e.id for e in everything if e.data["workspace"] == "acme"]
    assert connections >= drafts
    assert [e.id for e in seen] == written
    assert len(written) == total


def _slow_client(base: str, path: str, token: str) -> socket.socket:
    """A client that sends its request and never reads: its receive window stays tiny."""
    url = urlparse(base)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((url.hostname, url.port))
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {token}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    return sock


def test_a_slow_client_is_dropped_without_slowing_the_others(
    database: Database, store: EventStore
) -> None:
    s = make_app(database, store, queue_size=300, batch_size=100, ping_seconds=0.2)
    with running_server(s.app) as base:
        token = s.tokens.create_token("acme", ["read"])
        slow = _slow_client(base, "/workspaces/acme/events", token)
        wait_until(lambda: s.feed.stats().subscribers == 1)
        fast = Reader(f"{base}/workspaces/acme/events", bearer(token))
        wait_until(lambda: s.feed.stats().subscribers == 2)
        rounds = 0
        while s.feed.stats().dropped == 0:  # fill the slow one's socket, then its queue
            rounds += 1
            assert rounds <= 100, "the slow client was never dropped"
            write_draft(store, "acme", f"u{rounds}", files=200, size=2000)
        expected = [1, *range(3, 3 + rounds * 201)]  # position 2 is the other workspace's
        wait_until(lambda: len(fast.events) == len(expected))
        stats = s.feed.stats()
        fast.stop()
        slow.close()
    assert stats.dropped == 1
    assert stats.subscribers == 1  # the fast client's subscription survived
    assert [e.id for e in fast.events] == expected


def test_leaving_clients_are_unsubscribed(database: Database, store: EventStore) -> None:
    pipeline = plan_pipeline(store, "acme", entries=1)
    s = make_app(database, store, ping_seconds=0.2)
    with running_server(s.app) as base:
        token = bearer(s.tokens.create_token("acme", ["read"]))
        for url in (f"/pipelines/{pipeline.id}/events", "/workspaces/acme/events"):
            Reader(base + url, token, stop_after=1).join()
            wait_until(lambda: s.feed.stats().subscribers == 0)
        ndjson = {**token, "Accept": "application/x-ndjson"}
        with (
            httpx.Client() as client,
            client.stream("GET", f"{base}/workspaces/acme/events", headers=ndjson) as response,
        ):
            lines = response.iter_lines()  # dropping the iterator would close the connection
            next(lines)
            assert s.feed.stats().subscribers == 1
        wait_until(lambda: s.feed.stats().subscribers == 0)


def test_ending_the_streams_from_another_thread_closes_endless_streams(
    database: Database, store: EventStore
) -> None:
    s = make_app(database, store)
    with running_server(s.app) as base:
        token = bearer(s.tokens.create_token("acme", ["read"]))
        sse = Reader(f"{base}/workspaces/acme/events", token)
        with (
            httpx.Client() as client,
            client.stream(
                "GET",
                f"{base}/workspaces/acme/events",
                headers={**token, "Accept": "application/x-ndjson"},
            ) as ndjson,
        ):
            wait_until(lambda: s.feed.stats().subscribers == 2)
            s.feed.end_streams()  # as a shutdown signal handler would, from its own thread
            lines = list(ndjson.iter_lines())  # returns because the server ended the body
        assert [json.loads(line)["type"] for line in lines if line] == ["WorkspaceCreated"]
        assert [e.event for e in sse.join(timeout=10)] == ["WorkspaceCreated"]
        refused = Reader(f"{base}/workspaces/acme/events", token).join(timeout=10)
        assert [e.event for e in refused] == ["WorkspaceCreated"]  # replay, then closed


def test_closing_the_feed_ends_every_subscription(database: Database, store: EventStore) -> None:
    pipeline = plan_pipeline(store, "acme", entries=1)

    async def scenario() -> None:
        feed = EventFeed.for_recorder(store.recorder, database.conninfo)
        await feed.start()
        subscriptions = [
            feed.subscribe_all(),
            feed.subscribe_workspace("acme"),
            feed.subscribe_pipeline(pipeline.id),
        ]
        store.save(Draft(workspace_id="acme", user="zed"))  # one live event, not the pipeline's
        for sub in subscriptions[:2]:
            assert [e.type for e in await sub.next_batch()] == ["DraftStarted"]
        waiting = asyncio.create_task(subscriptions[2].next_batch())
        await feed.aclose()
        assert await waiting == []
        for sub in subscriptions:
            assert await sub.next_batch() == []
            assert sub.ended == "shutdown"
        assert feed.stats().subscribers == 0

    asyncio.run(scenario())


def test_with_no_subscriber_the_feed_moves_its_position_without_reading_events(
    database: Database, store: EventStore
) -> None:
    """Nobody listening: no event is read or decoded; a stream opened later misses nothing."""

    async def scenario() -> None:
        async with EventFeed.for_recorder(store.recorder, database.conninfo) as feed:
            for n in range(20):
                store.save(Draft(workspace_id="acme", user=f"quiet{n}"))
            head = store.recorder.max_notification_id()
            async with asyncio.timeout(10):
                while feed.stats().last_position < head:
                    await asyncio.sleep(0.01)
            assert feed.stats().decoded == 0
            with feed.subscribe_all() as live:
                store.save(Draft(workspace_id="acme", user="heard"))
                async with asyncio.timeout(10):
                    batch = await live.next_batch()
            assert [(e.type, e.position) for e in batch] == [("DraftStarted", head + 1)]
            assert feed.stats().decoded == 1

    asyncio.run(scenario())
    s = make_app(database, store)
    with TestClient(s.app) as client:
        token = bearer(s.tokens.create_token("acme", ["read"]))
        events = read_all(client, "/workspaces/acme/events?follow=false", token)
    assert sum(e.event == "DraftStarted" for e in events) == 21  # the quiet ones replay
