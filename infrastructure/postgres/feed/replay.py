"""Replays in keyset pages, the next page read while the current one is being sent.

A page is read and decoded on a pooled connection that goes back to the pool
before the page is sent to a client, so a slow client holds no connection.

Pages are bounded in bytes as well as rows: each client's replay holds its page
and the prefetched next one, so a client that stops reading pins two pages
until the send timeout drops it. A page's row limit follows the size of the
events just read (the first page is small, since nothing is known yet), so
pages stay near ``page_bytes`` whether events are 200 bytes or 200 KB.
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

FIRST_PAGE_ROWS = 10
"""Rows of a replay's first page, read before the events' size is known."""
Page = tuple[int, int, list[FeedEvent]]
"""(rows read, the last row's key, their events)."""

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
    page_bytes: int,
) -> AsyncGenerator[list[FeedEvent], None]:
    """Pages of ``query`` after ``after``; the next page follows the last row's column ``key``.

    ``size`` is the most rows a page may have, ``page_bytes`` what it aims to weigh.
    """

    async def page(values: tuple[Any, ...]) -> Page:
        async with pool.connection() as conn:
            cursor = await conn.execute(query, values, binary=True)  # bytea unencoded
            read = cast(list[Row], await cursor.fetchall())
            events = await rows.decode(conn, read)
        for event in events:
            event.keep_frames = False  # sent once, to this client alone
        # the rows themselves are not kept: a page waiting to be sent holds its events only
        return len(read), int(read[-1][key]) if read else 0, events

    limit = min(size, FIRST_PAGE_ROWS)
    upcoming: asyncio.Task[Page] | None = asyncio.create_task(page(params(after, limit)))
    try:
        while upcoming is not None:
            count, last, events = await upcoming
            upcoming = None
            if count == limit:  # there may be more
                weight = sum(len(e.text) for e in events)
                limit = max(1, min(size, count * page_bytes // max(weight, 1)))
                upcoming = asyncio.create_task(page(params(last, limit)))
            if events:
                yield events
    finally:
        if upcoming is not None:
            upcoming.cancel()
            with contextlib.suppress(asyncio.CancelledError, psycopg.Error):
                await upcoming
