"""API.md §2: pulling main from the content service."""

from __future__ import annotations

from functools import partial
from typing import get_args

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from interfaces.http import models as m
from interfaces.http.parsing import (
    choice,
    flag,
    int_param,
    parse_optional,
    path_param,
    reply,
    workspace_param,
)
from interfaces.http.registry import WAIT, Endpoint, Query
from interfaces.http.services import Services


async def start_pull(request: Request) -> Response:
    s = Services.of(request)
    ws = workspace_param(request)
    await s.guard(request, "write", ws)
    body = await parse_optional(request, m.PullRequest)
    wait = flag(request, "wait")
    records = None if body.records is None else [(r.folder, r.record_id) for r in body.records]
    start = partial(s.app.start_pull, ws, body.folders, paths=body.paths, records=records)
    pull = await run_in_threadpool(start)
    s.wake_worker()
    if not wait:
        return reply(m.PullAccepted(pull_id=pull.pull_id, state="running"), 202)
    done = await s.wait_for_pull(pull.pull_id)
    return reply(m.PullResult(pull_id=done.pull_id, state=done.state, **done.counts))


PULL_STATES: tuple[str, ...] = get_args(m.PullState)


async def pull_status(request: Request) -> Response:
    """Authorized against the pull's own workspace: another workspace's token gets the 404
    of a pull that does not exist (authenticating first: an anonymous caller learns nothing)."""
    s, pull_id = Services.of(request), path_param(request, "pull_id")
    principal = await s.authenticate(request)
    status = await run_in_threadpool(s.queries.pull_status, pull_id)
    s.authorize(principal, "read", s.visible(principal, "pull", pull_id, status["workspace"]))
    return reply(status)


async def list_pulls(request: Request) -> Response:
    s = Services.of(request)
    ws = workspace_param(request)
    await s.guard(request, "read", ws)
    state = choice(
        request, "state", PULL_STATES, f"?state= must be one of {', '.join(PULL_STATES)}"
    )
    limit = int_param(request, "limit", 50, 1, 500)
    found = await run_in_threadpool(s.queries.list_pulls, ws, state, limit)
    return reply({"pulls": found})


ENDPOINTS = [
    Endpoint(
        "POST",
        "/workspaces/{ws}/pulls",
        start_pull,
        "Pull main from the service",
        None,
        {202: m.PullAccepted, 200: m.PullResult},
        (409,),
        (WAIT,),
    ),
    Endpoint(
        "GET",
        "/pulls/{pull_id}",
        pull_status,
        "A pull's status",
        responses={200: m.PullStatusBody},
    ),
    Endpoint(
        "GET",
        "/workspaces/{ws}/pulls",
        list_pulls,
        "A workspace's pulls, newest first",
        responses={200: m.PullList},
        query=(
            Query("state", {"type": "string", "enum": list(PULL_STATES)}),
            Query("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
        ),
    ),
]
