"""Event streams over SSE and NDJSON: a pipeline's, a workspace's, and everything.

Every stream is "replay, then tail" with no gap and no repeat: it subscribes to
the live feed *first*, then replays from the store up to the point the live
queue is sure to cover, then drains the live queue skipping what the replay
already sent. Replayed and live events come from the same decoder, so a client
cannot tell them apart. A client that falls too far behind loses its live
queue, its stream ends, and it resumes with ``Last-Event-ID`` through replay.

The subscription lives inside the body generator, so it exists only while a
response is being streamed and is removed in ``finally`` when the client
leaves (sse-starlette and Starlette cancel the generator on disconnect).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from functools import partial
from uuid import UUID

from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from domain.errors import NotFound
from domain.ids import workspace_uuid
from infrastructure.postgres.feed.event_feed import EventFeed, Head
from infrastructure.postgres.feed.wire import (
    PIPELINE_TOPIC_MARK,
    TERMINAL_PIPELINE_EVENTS,
    FeedEvent,
    StreamId,
)
from interfaces.http.auth import Authenticator, Principal, may_see, require_scope
from interfaces.http.errors import ApiError
from interfaces.http.registry import Endpoint, Query, documented
from interfaces.http.stream_limits import OpenStreams, StreamLimits, chunked, stream_owner

NDJSON = "application/x-ndjson"
MAX_ID = 2**63 - 1  # PostgreSQL bigint: anything larger would fail in the query
MAX_ID_DIGITS = 20  # checked before int(): Python refuses to parse more than 4,300 digits
Batches = AsyncGenerator[list[FeedEvent], None]


def resume_point(request: Request) -> int:
    """``Last-Event-ID`` (header) or ``?after=``: an integer >= 0; 0 means from the start."""
    raw = request.headers.get("last-event-id")
    if raw is None:
        raw = request.query_params.get("after")
    if raw is None or raw.strip() == "":
        return 0
    raw = raw.strip()
    if len(raw) > MAX_ID_DIGITS or not raw.isascii() or not raw.isdigit() or int(raw) > MAX_ID:
        raise ApiError(
            "invalid_request", f"Last-Event-ID / after must be an integer from 0 to {MAX_ID}"
        )
    return int(raw)


def _follow(request: Request) -> bool:
    value = request.query_params.get("follow", "true").lower()
    if value not in ("true", "false", "1", "0"):
        raise ApiError("invalid_request", "follow must be true or false")
    return value in ("true", "1")


async def pipeline_events(feed: EventFeed, pipeline_id: UUID, after: int, head: Head) -> Batches:
    with feed.subscribe_pipeline(pipeline_id) as live:
        last, last_type = after, (head.type if head.version <= after else None)
        async with contextlib.aclosing(feed.replay_pipeline(pipeline_id, after)) as replay:
            async for page in replay:
                yield page
                last, last_type = page[-1].version, page[-1].type
        if last_type in TERMINAL_PIPELINE_EVENTS:
            return  # a finished pipeline: nothing more will come (a retry is a new connection)
        while batch := await live.next_batch():
            fresh = [e for e in batch if e.version > last]
            for i, event in enumerate(fresh):
                if event.is_terminal:
                    yield fresh[: i + 1]
                    return
            if fresh:
                yield fresh
                last = fresh[-1].version


async def positioned_events(
    feed: EventFeed, workspace: str | None, after: int, follow: bool
) -> Batches:
    """A workspace's events (or all, for ``None``) in global order, ``id:`` = position."""
    with contextlib.ExitStack() as stack:
        live = None
        if follow:
            subscribe = (
                feed.subscribe_all
                if workspace is None
                else partial(feed.subscribe_workspace, workspace)
            )
            live = stack.enter_context(subscribe())
        upto = await feed.max_position()
        replay = (
            feed.replay_all(after, upto)
            if workspace is None
            else feed.replay_workspace(workspace, after, upto)
        )
        async with contextlib.aclosing(replay) as pages:  # a prefetch must not outlive us
            async for page in pages:
                yield page
        if live is None:
            return
        last = max(after, upto)  # the replay covered everything up to here
        while batch := await live.next_batch():
            fresh = [e for e in batch if e.position > last]
            if fresh:
                yield fresh
                last = fresh[-1].position


def respond(
    request: Request,
    principal: Principal,
    batches: Batches,
    stream_id: StreamId,
    *,
    ping: float,
    open_streams: OpenStreams,
) -> Response:
    """SSE by default; one JSON object per line for ``Accept: application/x-ndjson``.

    The owner's allowance is checked last, once every other refusal has had its chance.
    """
    if NDJSON in request.headers.get("accept", ""):
        body = _encoded(batches, None)
        response: Response = StreamingResponse(body, media_type=NDJSON)
    else:
        body = _encoded(batches, stream_id)
        response = EventSourceResponse(body, ping=ping, headers={"X-Accel-Buffering": "no"})
    return open_streams.guard(stream_owner(request, principal), response, body)


async def _encoded(batches: Batches, stream_id: StreamId | None) -> AsyncGenerator[bytes, None]:
    # aclosing: when the client leaves, the inner generator's ``with`` ends now, not at GC
    async with contextlib.aclosing(batches) as events:
        async for batch in events:
            frames = (e.ndjson() if stream_id is None else e.sse(stream_id) for e in batch)
            for chunk in chunked(frames):
                yield chunk


def stream_routes(
    feed: EventFeed,
    authenticator: Authenticator,
    *,
    ping_seconds: float = 15.0,
    limits: StreamLimits | None = None,
) -> list[Route]:
    opened = OpenStreams(limits or StreamLimits())
    answer = partial(respond, ping=ping_seconds, open_streams=opened)

    async def pipeline_stream(request: Request) -> Response:
        principal = await authenticator.authenticate(request, allow_ticket=True)
        after = resume_point(request)
        absent = NotFound(f"pipeline {request.path_params['id']} does not exist")
        try:
            pipeline_id = UUID(request.path_params["id"])
        except ValueError:
            raise absent from None
        head = await feed.head(pipeline_id)
        if head is None or PIPELINE_TOPIC_MARK not in head.topic:
            raise absent
        if not may_see(principal, head.workspace):
            raise absent  # (the same answer: a token cannot tell another's from none)
        require_scope(principal, "read", head.workspace)
        return answer(
            request, principal, pipeline_events(feed, pipeline_id, after, head), "version"
        )

    async def workspace_stream(request: Request) -> Response:
        principal = await authenticator.authenticate(request, allow_ticket=True)
        workspace = request.path_params["ws"]
        require_scope(principal, "read", workspace)
        after, follow = resume_point(request), _follow(request)
        if await feed.head(workspace_uuid(workspace)) is None:
            raise NotFound(f"workspace {workspace} does not exist")
        events = positioned_events(feed, workspace, after, follow)
        return answer(request, principal, events, "position")

    async def global_stream(request: Request) -> Response:
        principal = await authenticator.authenticate(request, allow_ticket=True)
        require_scope(principal, "admin", None)
        after, follow = resume_point(request), _follow(request)
        return answer(request, principal, positioned_events(feed, None, after, follow), "position")

    return [
        Route("/pipelines/{id}/events", pipeline_stream, methods=["GET"]),
        Route("/workspaces/{ws}/events", workspace_stream, methods=["GET"]),
        Route("/events", global_stream, methods=["GET"]),
    ]


def _documented_stream(path: str, summary: str, operation: str, *query: Query) -> Endpoint:
    resume = (
        Query("after", {"type": "integer", "minimum": 0, "maximum": MAX_ID}),
        Query("ticket", {"type": "string"}),
    )
    return documented(
        "GET",
        path,
        summary,
        operation,
        responses={200: None},
        query=(*resume, *query),
        media_types=("text/event-stream", NDJSON),
    )


_FOLLOW = Query("follow", {"type": "boolean"})

DOCUMENTED = [
    _documented_stream("/pipelines/{pipeline_id}/events", "A pipeline's events", "pipeline_events"),
    _documented_stream(
        "/workspaces/{ws}/events", "A workspace's events", "workspace_events", _FOLLOW
    ),
    _documented_stream("/events", "Every event (admin)", "global_events", _FOLLOW),
]
"""The OpenAPI entries of ``stream_routes``."""
