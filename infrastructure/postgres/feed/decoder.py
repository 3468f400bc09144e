"""Rows of the events table to wire events, each with the workspace of its aggregate.

Only an aggregate's first event names its workspace, so the feed remembers it
per originator: from the creation events it reads, and for originators first
seen mid-stream (a resume, a replay) from their creation events, fetched in
one query per batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import psycopg

from application.projections.events import plain_fields, workspace_named
from infrastructure.postgres.feed.queries import EventQueries
from infrastructure.postgres.feed.wire import FeedEvent, Row, WireEncoder

Conn = psycopg.AsyncConnection[tuple[Any, ...]]
_ENCODE_SLICE = 1000


class WorkspaceCache:
    """originator id -> workspace, learnt from creation events; bounded by halving."""

    def __init__(self, capacity: int = 200_000) -> None:
        self._capacity = capacity
        self._known: dict[str, str | None] = {}

    def __contains__(self, originator_id: str) -> bool:
        return originator_id in self._known

    def get(self, originator_id: str) -> str | None:
        return self._known.get(originator_id)

    def put(self, originator_id: str, workspace: str | None) -> None:
        if len(self._known) >= self._capacity:
            # dicts keep insertion order: forget the older half
            for key in list(self._known)[: self._capacity // 2]:
                del self._known[key]
        self._known[originator_id] = workspace


class RowDecoder:
    def __init__(self, queries: EventQueries) -> None:
        self._queries = queries
        self._workspaces = WorkspaceCache()
        self._encoder = WireEncoder()

    async def decode(self, conn: Conn, rows: Sequence[Row]) -> list[FeedEvent]:
        """Wire events; unknown originators' workspaces are learnt in one query per batch."""
        for row in rows:
            if row[2] == 1:
                self._workspaces.put(row[1], workspace_named(plain_fields(row[4])))
        unknown = list({row[1] for row in rows if row[1] not in self._workspaces})
        if unknown:
            await self._learn(conn, unknown)
        workspace, encode = self._workspaces.get, self._encoder.encode
        events: list[FeedEvent] = []
        for start in range(0, len(rows), _ENCODE_SLICE):
            if start:
                await asyncio.sleep(0)  # a big replay page must not stall live delivery
            events += [
                encode(row, workspace(row[1])) for row in rows[start : start + _ENCODE_SLICE]
            ]
        return events

    async def workspace_of(self, conn: Conn, originator_id: str) -> str | None:
        if originator_id not in self._workspaces:
            await self._learn(conn, [originator_id])
        return self._workspaces.get(originator_id)

    async def _learn(self, conn: Conn, originators: list[str]) -> None:
        cursor = await conn.execute(self._queries.creation_states, (originators,))
        found: dict[str, str | None] = {
            oid: workspace_named(plain_fields(state)) for oid, state in await cursor.fetchall()
        }
        for originator in originators:
            self._workspaces.put(originator, found.get(originator))
