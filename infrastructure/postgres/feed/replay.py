"""Replays in keyset pages, the next page read while the current one is being sent.

A page is read and decoded on a pooled connection that goes back to the pool
before the page is sent to a client, so a slow client holds no connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable
from typing import Any, cast

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from infrastructure.postgres.feed.decoder import Conn, RowDecoder
from infrastructure.postgres.feed.wire import FeedEvent, Row

Params = Callable[[int, int], tuple[Any, ...]]
"""(the key to read after, the page size) -> the query's parameters."""


async def keyset_pages(
    pool: AsyncConnectionPool[Conn],
    rows: RowDecoder,
    query: sql.Composed,
    params: Params,
    key: int,
    after: int,
    size: int,
) -> AsyncGenerator[list[FeedEvent], None]:
    """Pages of ``query`` after ``after``; the next page follows the last row's column ``key``."""

    async def page(values: tuple[Any, ...]) -> tuple[list[Row], list[FeedEvent]]:
        async with pool.connection() as conn:
            cursor = await conn.execute(query, values, binary=True)  # bytea unencoded
            read = cast(list[Row], await cursor.fetchall())
            return read, await rows.decode(conn, read)

    upcoming: asyncio.Task[tuple[list[Row], list[FeedEvent]]] | None = asyncio.create_task(
        page(params(after, size))
    )
    try:
        while upcoming is not None:
            read, events = await upcoming
            upcoming = None
            if len(read) == size:
                upcoming = asyncio.create_task(page(params(int(read[-1][key]), size)))
            if events:
                yield events
    finally:
        if upcoming is not None:
            upcoming.cancel()
            with contextlib.suppress(asyncio.CancelledError, psycopg.Error):
                await upcoming
