"""The one place that builds publishd's parts from settings.

Nothing connects to a database or starts a thread at import time: ``Runtime``
does it when built, and ``Runtime.close`` undoes it.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from eventsourcing.postgres import PostgresApplicationRecorder
from starlette.applications import Starlette
from starlette.types import ASGIApp

from application.app import PublishdApplication
from application.concurrency import ConflictBudget
from application.connector import Connector
from application.queries import Queries
from application.webhook_delivery import DeliveryWorker
from application.webhooks import Webhooks
from application.worker import Worker
from domain.webhooks import RetrySchedule
from domain.workspace import Workspace
from infrastructure.connectors.factory import build_connector
from infrastructure.connectors.rate_limit import RateLimiters
from infrastructure.postgres.availability import Availability
from infrastructure.postgres.database import Database, resolve
from infrastructure.postgres.feed.event_feed import EventFeed
from infrastructure.postgres.projections.figures import OperationalFigures
from infrastructure.postgres.projections.runner import run_projections
from infrastructure.postgres.projections.views import PostgresViews
from infrastructure.postgres.readiness import Readiness
from infrastructure.postgres.tokens import TokenStore
from infrastructure.postgres.webhooks import PostgresWebhookStore
from infrastructure.settings import Settings
from infrastructure.webhooks.sender import HttpWebhookSender, SocketResolver
from interfaces.http.app import create_app
from interfaces.http.auth import Authenticator, auth_routes, require_scope
from interfaces.http.metrics import WEBHOOK_DELIVERIES, metrics_endpoint
from interfaces.http.rate_limit import RateLimit
from interfaces.http.services import Services
from interfaces.http.stream_limits import StreamLimits
from interfaces.http.streams import stream_routes
from interfaces.timed_connector import TimedConnector


def utc_now() -> datetime:
    return datetime.now(UTC)


def ensure_schema(database: Database, schema: str) -> None:
    with database.connect(autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')


@dataclass
class Runtime:
    """A process's connection to one publishd database."""

    settings: Settings
    database: Database
    app: PublishdApplication
    views: PostgresViews
    tokens: TokenStore
    availability: Availability
    """Whether the database answers, shared by this process's pools (503 while it does not)."""
    feeds: list[EventFeed] = field(default_factory=list)
    """The event feeds of the HTTP apps built on this runtime (ended on a stop signal)."""
    _connectors: dict[tuple[str, str], Connector] = field(default_factory=dict)
    rate_limiters: RateLimiters = field(default_factory=RateLimiters)
    """Shared by every connector of this process that uses the same credentials."""
    webhook_store: PostgresWebhookStore = field(init=False)
    """Webhook registrations (with their secrets) and deliveries, beside the event store."""

    def __post_init__(self) -> None:
        self.webhook_store = PostgresWebhookStore(
            self.database.conninfo,
            self.settings.db_schema,
            self.events_table,
            availability=self.availability,
            timeout=self.settings.database_timeout_seconds,
        )
        self.webhook_store.open()
        self.webhook_store.create_tables()

    @classmethod
    def build(cls, settings: Settings | None = None) -> Runtime:
        settings = settings or Settings()
        database = resolve(settings.database_url, settings.data_dir)
        ensure_schema(database, settings.db_schema)
        timeout = settings.database_timeout_seconds
        availability = Availability(database.conninfo, connect_timeout=timeout)
        env = database.eventsourcing_env(settings.db_schema, settings.pool_size, timeout)
        env["AGGREGATE_CACHE_MAXSIZE"] = "1000"
        views = PostgresViews(
            database, settings.db_schema, availability=availability, timeout=timeout
        )
        budget = ConflictBudget(
            attempts=settings.conflict_retry_attempts, seconds=settings.conflict_retry_seconds
        )
        app = PublishdApplication(env, views=views, conflict_budget=budget)
        recorder = app.recorder
        assert isinstance(recorder, PostgresApplicationRecorder)
        availability.guard(recorder.datastore.pool)
        tokens = TokenStore(
            database.conninfo, settings.db_schema, availability=availability, timeout=timeout
        )
        tokens.open()
        tokens.create_tables()
        return cls(settings, database, app, views, tokens, availability)

    def connector_for(self, workspace: Workspace) -> Connector:
        """One connector per workspace config and event loop (HTTP sessions belong to their loop).

        Every connector is timed, so ``/metrics`` reports the latency of each
        call the workers and pulls of this process make, and paced by the
        limiter its credentials share with every other connector of the
        process (``RateLimiters``) when the config gives a request rate.
        """
        config = workspace.connector
        try:
            loop_id = str(id(asyncio.get_running_loop()))
        except RuntimeError:
            loop_id = "none"
        key = (workspace.workspace_id, f"{sorted(config.items())}@{loop_id}")
        connector = self._connectors.get(key)
        if connector is None:
            built = build_connector(
                config,
                concurrency=self.settings.worker_concurrency,
                limiters=self.rate_limiters,
                environ=os.environ,
            )
            connector = TimedConnector(built, str(config.get("type")))
            self._connectors[key] = connector
        return connector

    def worker(self, name: str | None = None) -> Worker:
        return Worker(
            self.app,
            self.connector_for,
            clock=utc_now,
            lease=timedelta(seconds=self.settings.lease_seconds),
            concurrency=self.settings.worker_concurrency,
            name=name,
        )

    def webhooks(self) -> Webhooks:
        return Webhooks(
            self.webhook_store,
            SocketResolver(),
            workspace_exists=self.app.workspace_exists,
            clock=utc_now,
            allow_private=self.settings.webhook_allow_private,
        )

    def webhook_worker(self, name: str | None = None) -> DeliveryWorker:
        """Delivers webhooks (in ``serve`` and ``worker``; any number side by side)."""
        s = self.settings
        return DeliveryWorker(
            self.webhook_store,
            HttpWebhookSender(utc_now, timeout=s.webhook_timeout_seconds),
            SocketResolver(),
            clock=utc_now,
            schedule=RetrySchedule(
                base=timedelta(seconds=s.webhook_retry_base_seconds),
                cap=timedelta(seconds=s.webhook_retry_max_seconds),
                window=timedelta(seconds=s.webhook_retry_window_seconds),
            ),
            lease=timedelta(seconds=s.webhook_lease_seconds),
            allow_private=s.webhook_allow_private,
            name=name,
            poll_interval=s.webhook_poll_seconds,
            on_outcome=lambda outcome: WEBHOOK_DELIVERIES.labels(outcome).inc(),
        )

    async def aclose_connectors(self) -> None:
        for connector in self._connectors.values():
            await connector.aclose()
        self._connectors.clear()

    @property
    def events_table(self) -> str:
        recorder = self.app.recorder
        assert isinstance(recorder, PostgresApplicationRecorder)
        return recorder.events_table_name

    def run_projections(self, stop: threading.Event) -> None:
        """Run (or stand by for) every projection until ``stop`` is set. Blocks."""
        run_projections(
            self.database,
            self.settings.db_schema,
            stop,
            events_table=self.events_table,
        )

    def close(self) -> None:
        self.tokens.close()
        self.webhook_store.close()
        self.views.close()
        self.app.close()


def build_http_app(
    runtime: Runtime,
    *,
    with_worker: bool = True,
    with_projections: bool = True,
    ping_seconds: float = 15.0,
) -> ASGIApp:
    """The API + streams (+ workers + projections) of ``publishd serve``."""
    authenticator = Authenticator(runtime.tokens)
    worker = runtime.worker() if with_worker else None
    deliveries = runtime.webhook_worker() if with_worker else None
    feed = EventFeed.for_recorder(
        runtime.app.recorder,
        runtime.database.conninfo,
        queue_size=runtime.settings.stream_queue_events,
        replay_page_bytes=runtime.settings.stream_page_bytes,
        timeout=runtime.settings.database_timeout_seconds,
    )
    runtime.feeds.append(feed)

    services = Services(
        app=runtime.app,
        queries=Queries(runtime.app, runtime.views),
        authenticate=authenticator.authenticate,
        authorize=require_scope,
        worker=worker,
        readiness=Readiness(
            runtime.database.conninfo,
            runtime.availability,
            schema=runtime.settings.db_schema,
            events_table=runtime.events_table,
            connect_timeout=runtime.settings.database_timeout_seconds,
        ).check,
        webhooks=runtime.webhooks(),
    )

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        stop_thread = threading.Event()
        background: list[asyncio.Future[None]] = []
        await feed.start()
        if with_projections:
            background.append(
                asyncio.ensure_future(asyncio.to_thread(runtime.run_projections, stop_thread))
            )
        if worker is not None:
            background.append(asyncio.ensure_future(worker.serve(stop)))
        if deliveries is not None:
            background.append(asyncio.ensure_future(deliveries.serve(stop)))
        try:
            yield
        finally:
            stop.set()
            stop_thread.set()
            await asyncio.gather(*background, return_exceptions=True)
            await feed.aclose()
            await runtime.aclose_connectors()
            if deliveries is not None:
                await deliveries.sender.aclose()

    limits = StreamLimits(
        send_timeout=runtime.settings.stream_send_timeout_seconds,
        per_token=runtime.settings.streams_per_token,
    )
    streams = stream_routes(feed, authenticator, ping_seconds=ping_seconds, limits=limits)
    http_app = create_app(
        services,
        extra_routes=[*streams, *auth_routes(authenticator)],
        metrics_handler=metrics_endpoint(
            OperationalFigures(runtime.views), runtime.app.head, lambda: feed.stats().subscribers
        ),
        lifespan=lifespan,
        max_request_bytes=runtime.settings.max_request_bytes,
        max_drain_bytes=runtime.settings.max_drain_bytes,
        body_timeout=runtime.settings.body_timeout_seconds,
    )
    return RateLimit(http_app, runtime.settings.rate_limit, runtime.settings.rate_limit_burst)
