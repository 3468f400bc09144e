"""What the stream and auth tests share: an event store, a streams app, an SSE parser.

Events are written through a real eventsourcing Application into the test's
schema, with the real domain aggregates, so the streams see exactly the rows
production writes.
"""

from __future__ import annotations

import importlib.util
import json
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio.to_thread
from eventsourcing.application import Application
from starlette.applications import Starlette

from domain.draft import Draft
from domain.pipeline import PublishPipeline
from domain.plan import PlanEntry
from domain.workspace import Workspace
from infrastructure.postgres.database import Database
from infrastructure.postgres.feed.event_feed import EventFeed
from infrastructure.postgres.tokens import TokenStore
from interfaces.http.auth import Authenticator, auth_routes
from interfaces.http.errors import install_error_handlers
from interfaces.http.stream_limits import StreamLimits
from interfaces.http.streams import stream_routes

WORKER = "test-worker"


class EventStore(Application[uuid.UUID]):
    """All aggregates in one events table, as publishd stores them."""


def event_store(database: Database, schema: str) -> EventStore:
    env = database.eventsourcing_env(schema)
    if importlib.util.find_spec("infrastructure.postgres.factory") is None:
        env["PERSISTENCE_MODULE"] = "eventsourcing.postgres"
    return EventStore(env=env)


# --- writing the domain's events ---------------------------------------------
def create_workspace(store: EventStore, workspace: str) -> None:
    store.save(Workspace(workspace_id=workspace, connector={"type": "sandbox"}))


def plan_pipeline(store: EventStore, workspace: str, entries: int = 3) -> PublishPipeline:
    """A saved pipeline: PipelinePlanned then one EntryPlanned per entry."""
    plan = [
        PlanEntry(f"books/b{i}.json", "create", {"type": "create", "folder": "books", "fields": {}})
        for i in range(entries)
    ]
    pipeline = PublishPipeline(
        pipeline_id=str(uuid.uuid4()),
        workspace_id=workspace,
        user="ann",
        main_version=0,
        draft_version=1,
        phases=[{"phase": "create", "entries": entries}],
    )
    pipeline.plan_entries(plan)
    store.save(pipeline)
    return pipeline


def run_steps(pipeline: PublishPipeline) -> Iterator[None]:
    """Each step records one or two events; the caller saves after each."""
    now = datetime.now(UTC)
    pipeline.request_run(
        main_version=pipeline.last_main_version, draft_version=pipeline.draft_version
    )
    yield
    pipeline.claim(WORKER, now, timedelta(minutes=5))
    yield
    pipeline.start_phase(WORKER, "create")
    yield
    for i, key in enumerate(sorted(pipeline.entries)):
        pipeline.dispatch(WORKER, key, f"idem-{i}")
        pipeline.publish_entry(WORKER, key, f"rec-{i}", {"id": f"rec-{i}"}, i + 1)
        yield
    pipeline.complete_phase(WORKER, "create")
    yield
    pipeline.finish(WORKER)
    yield


def run_pipeline(store: EventStore, pipeline: PublishPipeline) -> None:
    for _ in run_steps(pipeline):
        store.save(pipeline)


def write_draft(store: EventStore, workspace: str, user: str, files: int, size: int = 0) -> None:
    draft = Draft(workspace_id=workspace, user=user)
    for i in range(files):
        draft.write_file(f"books/d{i}.json", {"n": i, "text": "x" * size})
    store.save(draft)


# --- the app under test -------------------------------------------------------
@dataclass
class StreamsApp:
    app: Starlette
    feed: EventFeed
    tokens: TokenStore
    authenticator: Authenticator


def streams_app(
    database: Database,
    store: EventStore,
    *,
    queue_size: int = 10_000,
    batch_size: int = 1000,
    ping_seconds: float = 15.0,
    limits: StreamLimits | None = None,
) -> StreamsApp:
    recorder: Any = store.recorder
    feed = EventFeed.for_recorder(
        recorder,
        database.conninfo,
        queue_size=queue_size,
        batch_size=batch_size,
        poll_seconds=1.0,
    )
    tokens = TokenStore(database.conninfo, recorder.datastore.schema)
    authenticator = Authenticator(tokens)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(tokens.open)
        await anyio.to_thread.run_sync(tokens.create_tables)
        await feed.start()
        try:
            yield
        finally:
            await feed.aclose()
            await anyio.to_thread.run_sync(tokens.close)

    app = Starlette(
        routes=[
            *stream_routes(feed, authenticator, ping_seconds=ping_seconds, limits=limits),
            *auth_routes(authenticator),
        ],
        lifespan=lifespan,
    )
    install_error_handlers(app)
    return StreamsApp(app, feed, tokens, authenticator)


# --- reading SSE --------------------------------------------------------------
@dataclass(frozen=True)
class Sse:
    id: int
    event: str
    data: dict[str, Any]


def parse_sse(lines: Iterable[str]) -> Iterator[Sse]:
    """Events from SSE lines; comments (pings) are skipped."""
    fields: dict[str, str] = {}
    for line in lines:
        if line == "":
            if "data" in fields:
                yield Sse(int(fields["id"]), fields["event"], json.loads(fields["data"]))
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
