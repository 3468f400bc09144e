"""API.md §4-5: planning a draft's publish, running it, and reading how it went."""

from __future__ import annotations

from functools import partial

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from application.views import EntryCursor
from domain.calls import calls_per_phase
from domain.connector_config import batch_limits
from domain.json_types import JsonObject
from domain.pipeline import PublishPipeline
from domain.plan import Phase, UpstreamPolicy
from domain.states import PipelineState
from interfaces.http import models as m
from interfaces.http.errors import ApiError
from interfaces.http.parsing import (
    choice,
    draft_params,
    flag,
    int_param,
    parse_optional,
    path_param,
    query,
    reply,
)
from interfaces.http.registry import WAIT, Endpoint, Query
from interfaces.http.services import Services

ENTRY_STATUSES = ("planned", "published", "failed", "skipped")
"""What ``?status=`` may filter on: an entry in flight is reported as planned."""


# --- §4 plan and run -------------------------------------------------------------
async def _prepare_plan(s: Services, request: Request, ws: str, user: str) -> UpstreamPolicy:
    """A plan's options (API.md §4): refresh main first if asked; the upstream policy."""
    options = await parse_optional(request, m.PlanOptions)
    if options.refresh:
        await s.refresh(ws, user)
    return UpstreamPolicy(options.on_upstream_change)


async def plan(request: Request) -> Response:
    s = Services.of(request)
    ws, user = draft_params(request)
    await s.guard(request, "publish", ws)
    policy = await _prepare_plan(s, request, ws, user)

    def command() -> tuple[PublishPipeline, JsonObject]:
        pipeline = s.app.plan(ws, user, on_upstream_change=policy)
        return pipeline, s.app.workspace(ws).connector

    pipeline, connector = await run_in_threadpool(command)
    return reply(_planned(pipeline, connector), 201)


def _planned(pipeline: PublishPipeline, connector: JsonObject) -> JsonObject:
    """The plan as API.md §4 shows it: phases with their calls, entries with their diffs.

    Calls are counted with the batch limits of the workspace's connector, as
    the run will send them (``domain.calls``).
    """
    limits = batch_limits(connector)
    calls = calls_per_phase(pipeline.pipeline_id, pipeline.entries.values(), limits)
    return {
        "pipeline_id": pipeline.pipeline_id,
        "workspace": pipeline.workspace_id,
        "user": pipeline.user,
        "state": pipeline.state,
        "main_version": pipeline.main_version,
        "draft_version": pipeline.draft_version,
        "phases": [
            {"phase": p, "entries": len(pipeline.entries_of(p)), "calls": calls[p]}
            for p in pipeline.phases
        ],
        "estimated_calls": sum(calls.values()),
        "on_upstream_change": pipeline.on_upstream_change,
        "entries": [entry.planned() for entry in pipeline.entries.values()],
    }


async def _run_reply(s: Services, request: Request, pipeline_id: str, state: str) -> Response:
    """202 at once; with ``?wait=true``, the final status once the worker is done."""
    s.wake_worker()
    if flag(request, "wait"):
        return reply(await s.wait_for_end(pipeline_id))
    return reply(m.RunAccepted(pipeline_id=pipeline_id, state=state), 202)


async def publish(request: Request) -> Response:
    s = Services.of(request)
    ws, user = draft_params(request)
    await s.guard(request, "publish", ws)
    policy = await _prepare_plan(s, request, ws, user)
    pipeline = await run_in_threadpool(partial(s.app.publish, ws, user, on_upstream_change=policy))
    return await _run_reply(s, request, pipeline.pipeline_id, pipeline.state)


async def run_pipeline(request: Request) -> Response:
    s, pipeline_id = Services.of(request), path_param(request, "pipeline_id")
    await s.guard_pipeline(request, "publish", pipeline_id)
    pipeline = await run_in_threadpool(s.app.request_run, pipeline_id)
    return await _run_reply(s, request, pipeline_id, pipeline.state)


async def cancel_pipeline(request: Request) -> Response:
    s, pipeline_id = Services.of(request), path_param(request, "pipeline_id")
    await s.guard_pipeline(request, "publish", pipeline_id)
    pipeline = await run_in_threadpool(s.app.request_cancel, pipeline_id)
    return reply(m.RunAccepted(pipeline_id=pipeline_id, state=pipeline.state), 202)


async def retry_pipeline(request: Request) -> Response:
    s, pipeline_id = Services.of(request), path_param(request, "pipeline_id")
    await s.guard_pipeline(request, "publish", pipeline_id)
    pipeline = await run_in_threadpool(s.app.request_retry, pipeline_id)
    return await _run_reply(s, request, pipeline_id, pipeline.state)


# --- §5 status ---------------------------------------------------------------------
async def pipeline_status(request: Request) -> Response:
    s, pipeline_id = Services.of(request), path_param(request, "pipeline_id")
    await s.guard_pipeline(request, "read", pipeline_id)
    return reply(await run_in_threadpool(s.queries.pipeline_status, pipeline_id))


async def list_pipelines(request: Request) -> Response:
    s = Services.of(request)
    principal = await s.authenticate(request)
    q = query(request)
    ws = q.get("workspace")
    if ws is None and not principal.admin:
        ws = principal.workspace  # a workspace's token lists its own workspace's pipelines
    s.authorize(principal, "read", ws)
    states = tuple(PipelineState)
    state = choice(request, "state", states, f"?state= must be one of {', '.join(states)}")
    limit = int_param(request, "limit", 50, 1, 500)
    found = await run_in_threadpool(
        s.queries.list_pipelines, ws, q.get("user"), state, limit, q.get("before")
    )
    return reply({"pipelines": found})


async def pipeline_entries(request: Request) -> Response:
    s, pipeline_id = Services.of(request), path_param(request, "pipeline_id")
    await s.guard_pipeline(request, "read", pipeline_id)
    phase = choice(
        request, "phase", tuple(Phase), "?phase= must be edit, create, delete or backfill"
    )
    status = choice(
        request, "status", ENTRY_STATUSES, "?status= must be planned, published, failed or skipped"
    )
    q = query(request)
    if "limit" not in q and "after" not in q:
        entries = await run_in_threadpool(s.queries.pipeline_entries, pipeline_id, phase, status)
        return reply({"entries": entries, "next": None})
    limit = int_param(request, "limit", 500, 1, 1000)
    after = _entry_cursor(q.get("after"))
    page, following = await run_in_threadpool(
        s.queries.pipeline_entries_page, pipeline_id, phase, status, after, limit
    )
    cursor = None if following is None else f"{following[0]}.{following[1]}"
    return reply({"entries": page, "next": cursor})


def _entry_cursor(raw: str | None) -> EntryCursor | None:
    """``?after=``: the ``next`` of the page before (``<phase rank>.<plan order>``)."""
    if raw is None:
        return None
    rank, dot, seq = raw.partition(".")
    if not (dot and rank.isascii() and rank.isdigit() and seq.isascii() and seq.isdigit()):
        raise ApiError("invalid_request", "?after= must be the next cursor of a previous page")
    if len(rank) > 3 or len(seq) > 18:
        raise ApiError("invalid_request", "?after= must be the next cursor of a previous page")
    return int(rank), int(seq)


async def pipeline_at_version(request: Request) -> Response:
    """The pipeline as it was after its event ``version``: the audit timeline's moments."""
    s, pipeline_id = Services.of(request), path_param(request, "pipeline_id")
    await s.guard_pipeline(request, "read", pipeline_id)
    raw = path_param(request, "version")
    if not (raw.isascii() and raw.isdigit() and 0 < len(raw) <= 18 and int(raw) >= 1):
        raise ApiError("invalid_request", "the version must be an event number from 1")
    return reply(await run_in_threadpool(s.queries.pipeline_at_version, pipeline_id, int(raw)))


DRAFT = "/workspaces/{ws}/drafts/{user}"
PIPELINE = "/pipelines/{pipeline_id}"

ENDPOINTS = [
    Endpoint(
        "POST", DRAFT + "/plans", plan, "Plan a publish", m.PlanOptions, {201: m.PlanOut}, (502,)
    ),
    Endpoint(
        "POST",
        DRAFT + "/publish",
        publish,
        "Plan and run",
        m.PlanOptions,
        {202: m.RunAccepted, 200: m.PipelineStatusBody},
        (409, 502),
        (WAIT,),
    ),
    Endpoint(
        "POST",
        PIPELINE + "/run",
        run_pipeline,
        "Run a plan",
        None,
        {202: m.RunAccepted, 200: m.PipelineStatusBody},
        (409,),
        (WAIT,),
    ),
    Endpoint(
        "POST",
        PIPELINE + "/cancel",
        cancel_pipeline,
        "Cancel",
        None,
        {202: m.RunAccepted},
        (409,),
    ),
    Endpoint(
        "POST",
        PIPELINE + "/retry",
        retry_pipeline,
        "Retry failed and skipped entries",
        None,
        {202: m.RunAccepted, 200: m.PipelineStatusBody},
        (409,),
        (WAIT,),
    ),
    Endpoint(
        "GET",
        PIPELINE,
        pipeline_status,
        "A pipeline's status",
        responses={200: m.PipelineStatusBody},
    ),
    Endpoint(
        "GET",
        "/pipelines",
        list_pipelines,
        "Pipelines, newest first",
        responses={200: m.PipelineList},
        query=(
            Query("workspace", {"type": "string"}),
            Query("user", {"type": "string"}),
            Query("state", {"type": "string"}),
            Query("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
            Query("before", {"type": "string"}),
        ),
    ),
    Endpoint(
        "GET",
        PIPELINE + "/entries",
        pipeline_entries,
        "A pipeline's entries",
        responses={200: m.EntryList},
        query=(
            Query("phase", {"type": "string"}),
            Query("status", {"type": "string"}),
            Query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
            Query("after", {"type": "string"}),
        ),
    ),
    Endpoint(
        "GET",
        PIPELINE + "/versions/{version}",
        pipeline_at_version,
        "A pipeline as it was after one of its events",
        responses={200: m.PipelineAtVersionBody},
    ),
]
