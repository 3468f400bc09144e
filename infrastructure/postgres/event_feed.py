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
from collections.abc import AsyncGenerator, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from infrastructure.postgres.event_queries import EventQueries
from infrastructure.postgres.event_wire import (
    FeedEvent,
    Row,
    WireEncoder,
    WorkspaceCache,
    decode_state,
    event_type,
    workspace_named,
)
from infrastructure.postgres.subscription import SHUTDOWN, Subscription

log = logging.getLogger(__name__)

Conn = psycopg.AsyncConnection[tuple[Any, ...]]
_ENCODE_SLICE = 1000


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
        queue_size: int = 10_000,
        poll_seconds: float = 5.0,
        pool_size: int = 4,
    ) -> None:
        self._conninfo = conninfo
        self._channel = channel or table.replace(".", "_")
        self._q = EventQueries(schema, table)
        self._batch_size = batch_size
        self._page_size = replay_page_size
        self._queue_size = queue_size
        self._poll_seconds = poll_seconds
        self._pool = AsyncConnectionPool(
            conninfo, min_size=1, max_size=pool_size, kwargs={"autocommit": True}, open=False
        )
        self._workspaces = WorkspaceCache()
        self._encoder = WireEncoder()
        self._subscribers: dict[Hashable, set[Subscription]] = {}
        self._last = 0
        self._behind = True
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._reader: Conn | None = None
        self._closing = False
        self._dropped = 0
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
        for subscribers in list(self._subscribers.values()):
            for subscription in list(subscribers):
                subscription.end(SHUTDOWN)

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
        return self._subscribe(("originator", str(pipeline_id)))

    def subscribe_workspace(self, workspace: str) -> Subscription:
        return self._subscribe(("workspace", workspace))

    def subscribe_all(self) -> Subscription:
        return self._subscribe(("all", None))

    def stats(self) -> FeedStats:
        count = sum(len(s) for s in self._subscribers.values())
        return FeedStats(subscribers=count, dropped=self._dropped, last_position=self._last)

    def _subscribe(self, key: Hashable) -> Subscription:
        subscription = Subscription(key, self._queue_size, self._forget)
        if self._closing:
            subscription.end(SHUTDOWN)
        else:
            self._subscribers.setdefault(key, set()).add(subscription)
        return subscription

    def _forget(self, subscription: Subscription) -> None:
        if subscription.ended == "overflow":
            self._dropped += 1
        subscribers = self._subscribers.get(subscription.key)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[subscription.key]

    def _dispatch(self, event: FeedEvent) -> None:
        keys: list[Hashable] = [("originator", event.originator_id), ("all", None)]
        if event.workspace is not None:
            keys.append(("workspace", event.workspace))
        for key in keys:
            subscribers = self._subscribers.get(key)
            if subscribers:
                for subscription in list(subscribers):
                    subscription.offer(event)

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
                log.warning("event feed reader failed; reconnecting", exc_info=True)
                await self._reconnect_reader()

    async def _read_new(self) -> None:
        assert self._reader is not None
        while True:
            params = (self._last, self._batch_size)
            cursor = await self._reader.execute(self._q.after, params, binary=True)
            rows = cast(list[Row], await cursor.fetchall())
            if not rows:
                return
            for event in await self._decode(self._reader, rows):
                self._dispatch(event)
            self._last = rows[-1][0]
            if len(rows) < self._batch_size:
                return
            await asyncio.sleep(0)  # let the streams send before the next batch

    async def _reconnect_reader(self) -> None:
        await asyncio.sleep(0.5)
        if self._reader is not None:
            await self._reader.close()
        with contextlib.suppress(psycopg.OperationalError):
            self._reader = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        self._behind = True
        self._wake.set()

    # --- decoding ---------------------------------------------------------
    async def _decode(self, conn: Conn, rows: Sequence[Row]) -> list[FeedEvent]:
        """Wire events; unknown originators' workspaces are learnt in one query per batch."""
        for row in rows:
            if row[2] == 1:
                self._workspaces.put(row[1], workspace_named(decode_state(row[4])))
        unknown = list({row[1] for row in rows if row[1] not in self._workspaces})
        if unknown:
            await self._learn_workspaces(conn, unknown)
        workspace, encode = self._workspaces.get, self._encoder.encode
        events: list[FeedEvent] = []
        for start in range(0, len(rows), _ENCODE_SLICE):
            if start:
                await asyncio.sleep(0)  # a big replay page must not stall live delivery
            events += [encode(row, workspace(row[1])) for row in rows[start:start + _ENCODE_SLICE]]
        return events

    async def _learn_workspaces(self, conn: Conn, originators: list[str]) -> None:
        cursor = await conn.execute(self._q.creation_states, (originators,))
        found: dict[str, str | None] = {
            oid: workspace_named(decode_state(state)) for oid, state in await cursor.fetchall()
        }
        for originator in originators:
            self._workspaces.put(originator, found.get(originator))

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
            key = str(originator_id)
            if key not in self._workspaces:
                await self._learn_workspaces(conn, [key])
        version, topic = int(row[0]), str(row[1])
        return Head(version, event_type(topic), topic, self._workspaces.get(key))

    def replay_pipeline(
        self, pipeline_id: UUID, after_version: int, page_size: int | None = None
    ) -> AsyncGenerator[list[FeedEvent], None]:
        """Pages of one aggregate's events after a version, to its current end."""
        return self._paged(
            self._q.of_originator, lambda after, n: (pipeline_id, after, n), 2, after_version,
            page_size,
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

    async def _paged(
        self,
        query: sql.Composed,
        params: Callable[[int, int], tuple[Any, ...]],
        key: int,
        after: int,
        page_size: int | None,
    ) -> AsyncGenerator[list[FeedEvent], None]:
        """Keyset pages; the next page is read while the current one is being sent."""
        size = page_size or self._page_size
        upcoming: asyncio.Task[tuple[list[Row], list[FeedEvent]]] | None = (
            asyncio.create_task(self._page(query, params(after, size)))
        )
        try:
            while upcoming is not None:
                rows, events = await upcoming
                upcoming = None
                if len(rows) == size:
                    next_params = params(int(rows[-1][key]), size)
                    upcoming = asyncio.create_task(self._page(query, next_params))
                if events:
                    yield events
        finally:
            if upcoming is not None:
                upcoming.cancel()
                with contextlib.suppress(asyncio.CancelledError, psycopg.Error):
                    await upcoming

    async def _page(
        self, query: sql.Composed, params: tuple[Any, ...]
    ) -> tuple[list[Row], list[FeedEvent]]:
        # the connection goes back to the pool before the page is sent to a client
        async with self._pool.connection() as conn:
            cursor = await conn.execute(query, params, binary=True)  # bytea unencoded
            rows = cast(list[Row], await cursor.fetchall())
            return rows, await self._decode(conn, rows)
