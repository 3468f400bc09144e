"""The process's one view of new events: one LISTEN connection, fanned out in-process.

eventsourcing's own subscription holds two threads and a connection per
subscriber; a thousand SSE clients would need a thousand connections. Here one
listener connection waits for NOTIFY and one reader connection reads what is new
in batches (``notification_id > last``); each event is decoded once and offered
to the bounded queues of the subscribers interested in its pipeline, its
workspace, or everything. Replays run on a small shared pool.

The recorder's NOTIFY payload, when there is one, is the highest committed
notification id: a notification at or below what was already read costs no
query. A notify without a payload just means "read what is new". A slow poll
(``poll_seconds``) is the safety net for notifies lost while reconnecting.

Reading ``notification_id > last`` relies on the recorder committing in
notification-id order (eventsourcing's recorders lock the table for inserts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from application.projections.events import event_name
from infrastructure.postgres.availability import RECONNECT_TIMEOUT
from infrastructure.postgres.feed.decoder import Conn, RowDecoder
from infrastructure.postgres.feed.queries import EventQueries
from infrastructure.postgres.feed.replay import Params, keyset_pages
from infrastructure.postgres.feed.subscription import Subscribers, Subscription
from infrastructure.postgres.feed.wire import FeedEvent, Row

log = logging.getLogger(__name__)

RECONNECT_FIRST = 0.25
RECONNECT_MAX = 5.0
"""Bounds of the pause before the reader's next reconnection attempt (doubling in between)."""


@dataclass(frozen=True)
class Head:
    """An aggregate's latest event and the workspace its first event names."""

    version: int
    type: str
    topic: str
    workspace: str | None


@dataclass(frozen=True)
class FeedStats:
    subscribers: int
    dropped: int
    last_position: int
    decoded: int
    """Events read and decoded for live subscribers (none while there are none)."""


class EventFeed:
    def __init__(
        self,
        conninfo: str,
        *,
        schema: str,
        table: str,
        channel: str | None = None,
        batch_size: int = 1000,
        replay_page_size: int = 5000,
        replay_page_bytes: int = 256 * 1024,
        queue_size: int = 10_000,
        poll_seconds: float = 5.0,
        pool_size: int = 4,
        timeout: float = 30.0,
    ) -> None:
        self._conninfo = conninfo
        self._channel = channel or table.replace(".", "_")
        self._q = EventQueries(schema, table)
        self._batch_size = batch_size
        self._page_size = replay_page_size
        self._page_bytes = replay_page_bytes
        self._poll_seconds = poll_seconds
        # Bounded waits and checked connections: while the database is down a
        # replay fails within ``timeout`` (503), and after a restart no dead
        # connection is lent out.
        self._pool = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, "connect_timeout": max(1, round(timeout))},
            timeout=timeout,
            check=AsyncConnectionPool.check_connection,
            reconnect_timeout=RECONNECT_TIMEOUT,  # then the next replay connects at once
            open=False,
        )
        self._timeout = timeout
        self._reconnect_delay = RECONNECT_FIRST
        self._rows = RowDecoder(self._q)
        self._subscribers = Subscribers(queue_size)
        self._last = 0
        self._decoded = 0
        self._behind = True
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._reader: Conn | None = None
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def for_recorder(cls, recorder: Any, conninfo: str, **options: Any) -> EventFeed:
        """Table, schema and channel as an eventsourcing Postgres recorder names them."""
        return cls(
            conninfo,
            schema=recorder.datastore.schema,
            table=recorder.events_table_name,
            channel=getattr(recorder, "channel_name", None),
            **options,
        )

    # --- life cycle -------------------------------------------------------
    async def start(self) -> None:
        """LISTEN first, then note the head: anything committed later is delivered live."""
        self._loop = asyncio.get_running_loop()
        listener = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        await listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        self._reader = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        await self._pool.open(wait=True)
        self._last = await self.max_position()
        self._tasks = [
            asyncio.create_task(self._listen(listener), name="event-feed-listen"),
            asyncio.create_task(self._read_forever(), name="event-feed-read"),
        ]

    def end_streams(self) -> None:
        """End every subscription now and refuse new ones; the streams then close.

        Synchronous, and safe from any thread, so that a shutdown signal handler
        can call it before the server waits for open connections: an endless
        stream would otherwise hold the shutdown open.
        """
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if self._loop is not None and running is not self._loop:
            self._loop.call_soon_threadsafe(self._end_streams)
        else:
            self._end_streams()

    def _end_streams(self) -> None:
        self._closing = True
        self._subscribers.end_all()

    async def aclose(self) -> None:
        """End every subscription (streams then close) and release the connections."""
        self._end_streams()
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._reader is not None:
            await self._reader.close()
        await self._pool.close()

    async def __aenter__(self) -> EventFeed:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    # --- live -------------------------------------------------------------
    def subscribe_pipeline(self, pipeline_id: UUID | str) -> Subscription:
        return self._subscribers.subscribe(("originator", str(pipeline_id)))

    def subscribe_workspace(self, workspace: str) -> Subscription:
        return self._subscribers.subscribe(("workspace", workspace))

    def subscribe_all(self) -> Subscription:
        return self._subscribers.subscribe(("all", None))

    def stats(self) -> FeedStats:
        return FeedStats(
            subscribers=len(self._subscribers),
            dropped=self._subscribers.dropped,
            last_position=self._last,
            decoded=self._decoded,
        )

    async def _listen(self, listener: Conn) -> None:
        delay = 0.1
        while not self._closing:
            try:
                async with listener:
                    self._note(None)  # catch up on whatever happened while not listening
                    async for notify in listener.notifies():
                        self._note(notify.payload)
            except psycopg.Error:
                log.warning("event feed listener lost its connection; reconnecting")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            with contextlib.suppress(psycopg.Error):
                listener = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
                channel = sql.Identifier(self._channel)
                await listener.execute(sql.SQL("LISTEN {}").format(channel))
                delay = 0.1

    def _note(self, payload: str | None) -> None:
        try:
            position = int(payload) if payload else None
        except ValueError:
            position = None
        if position is None or position > self._last:
            self._behind = True
            self._wake.set()

    async def _read_forever(self) -> None:
        # checks _closing too: Python 3.11's wait_for can swallow a cancellation
        while not self._closing:
            try:
                async with asyncio.timeout(self._poll_seconds):
                    await self._wake.wait()
            except TimeoutError:
                self._behind = True
            self._wake.clear()
            if not self._behind:
                continue
            self._behind = False
            try:
                await self._read_new()
            except Exception:  # the reader must outlive any one bad read
                if self._reconnect_delay == RECONNECT_FIRST:
                    log.warning("event feed reader failed; reconnecting", exc_info=True)
                await self._reconnect_reader()

    async def _read_new(self) -> None:
        assert self._reader is not None
        if not len(self._subscribers):
            # Nobody to offer events to: only the position moves (reading and
            # decoding every event of a busy store for no one was an eighth of a
            # serve process's time). A stream that subscribes later replays from
            # the table what was committed before it subscribed; one that
            # subscribed while the head was read gets the events read as usual.
            cursor = await self._reader.execute(self._q.max_position)
            row = await cursor.fetchone()
            if not len(self._subscribers):
                self._last = max(self._last, int(row[0] or 0) if row else 0)
                return
        while True:
            params = (self._last, self._batch_size)
            cursor = await self._reader.execute(self._q.after, params, binary=True)
            rows = cast(list[Row], await cursor.fetchall())
            if not rows:
                return
            decoded = await self._rows.decode(self._reader, rows)
            self._decoded += len(decoded)
            for event in decoded:
                self._subscribers.offer(event)
            self._last = rows[-1][0]
            if len(rows) < self._batch_size:
                return
            await asyncio.sleep(0)  # let the streams send before the next batch

    async def _reconnect_reader(self) -> None:
        """A new reader connection, after a pause that doubles while the database stays away.

        The reader resumes from the last position it offered, so subscribers
        see every event once, whatever was committed while it was away.
        """
        await asyncio.sleep(self._reconnect_delay)
        if self._reader is not None:
            await self._reader.close()
        try:
            self._reader = await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, connect_timeout=max(1, round(self._timeout))
            )
        except psycopg.OperationalError:
            self._reconnect_delay = min(self._reconnect_delay * 2, RECONNECT_MAX)
        else:
            if self._reconnect_delay > RECONNECT_FIRST:
                log.warning("event feed reader reconnected")
            self._reconnect_delay = RECONNECT_FIRST
        self._behind = True
        self._wake.set()

    # --- replay -----------------------------------------------------------
    async def max_position(self) -> int:
        async with self._pool.connection() as conn:
            row = await (await conn.execute(self._q.max_position)).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    async def head(self, originator_id: UUID) -> Head | None:
        """The latest event of an aggregate, or None when it has none."""
        async with self._pool.connection() as conn:
            row = await (await conn.execute(self._q.head, (originator_id,))).fetchone()
            if row is None:
                return None
            workspace = await self._rows.workspace_of(conn, str(originator_id))
        version, topic = int(row[0]), str(row[1])
        return Head(version, event_name(topic), topic, workspace)

    def replay_pipeline(
        self, pipeline_id: UUID, after_version: int, page_size: int | None = None
    ) -> AsyncGenerator[list[FeedEvent], None]:
        """Pages of one aggregate's events after a version, to its current end."""
        return self._paged(
            self._q.of_originator, lambda a, n: (pipeline_id, a, n), 2, after_version, page_size
        )

    def replay_all(
        self, after: int, upto: int, page_size: int | None = None
    ) -> AsyncGenerator[list[FeedEvent], None]:
        """Pages of every event with ``after < position <= upto``."""
        return self._paged(self._q.between, lambda a, n: (a, upto, n), 0, after, page_size)

    def replay_workspace(
        self, workspace: str, after: int, upto: int, page_size: int | None = None
    ) -> AsyncGenerator[list[FeedEvent], None]:
        """Pages of a workspace's events with ``after < position <= upto``."""
        return self._paged(
            self._q.of_workspace, lambda a, n: (a, upto, workspace, n), 0, after, page_size
        )

    def _paged(
        self, query: sql.Composed, params: Params, key: int, after: int, page_size: int | None
    ) -> AsyncGenerator[list[FeedEvent], None]:
        size = page_size or self._page_size
        return keyset_pages(
            self._pool, self._rows, query, params, key, after, size, self._page_bytes
        )
