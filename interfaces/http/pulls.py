"""API.md §2: pulling main from the content service."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from interfaces.http import models as m
from interfaces.http.parsing import flag, parse_optional, reply, workspace_param
from interfaces.http.registry import WAIT, Endpoint
from interfaces.http.services import Services


async def start_pull(request: Request) -> Response:
    s = Services.of(request)
    ws = workspace_param(request)
    await s.guard(request, "write", ws)
    body = await parse_optional(request, m.PullRequest)
    wait = flag(request, "wait")
    pull = await run_in_threadpool(s.app.start_pull, ws, body.folders)
    if not wait:
        s.start_background_pull(pull.pull_id)
        return reply(m.PullAccepted(pull_id=pull.pull_id), 202)
    done = await s.pull_now(pull.pull_id)
    return reply(m.PullResult(pull_id=done.pull_id, state=done.state, **done.counts))


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
]
