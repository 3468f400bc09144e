"""HTTP handlers for API.md §1-5 and §7: parse, call one application method, answer.

Handlers are thin on purpose: validation lives in the pydantic models and the
domain, errors map to statuses in ``errors.py``, and authorisation is one call
to ``services.guard``.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from domain.errors import NotFound
from interfaces.http import models as m
from interfaces.http.errors import ApiError
from interfaces.services import Services

M = TypeVar("M", bound=BaseModel)
_WORKSPACE = re.compile(m.WORKSPACE_ID)
_USER = re.compile(m.USER_ID)


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


_BODY = msgspec.json.Decoder()


async def read_json(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        raise ApiError("invalid_request", "the request needs a JSON body")
    try:
        # msgspec, unlike the json module, refuses what JSON does not allow and
        # publishd could not store: NaN, Infinity, lone surrogates, invalid UTF-8.
        value = _BODY.decode(raw)
    except RecursionError:
        raise ApiError("invalid_request", "the body is nested too deeply") from None
    except msgspec.DecodeError as exc:
        raise ApiError("invalid_request", f"the body is not valid JSON: {exc}") from None
    _check_storable(value)
    return value


MAX_JSON_DEPTH = 64
"""Deeper bodies are refused: recording and replaying them recurses once per level."""


def _check_storable(value: Any) -> None:
    """Refuse what would be recorded and then break its readers.

    A NUL (``\\u0000``) is refused by every jsonb projection, so the projections
    would stop and every read-your-writes query would time out; a deeply nested
    body overflows Python's recursion limit where aggregates are copied and replayed.
    """
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ApiError("invalid_request", f"the body nests deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(item, str):
            if "\x00" in item:
                raise ApiError("invalid_request", "the body contains a NUL character (\\u0000)")
        elif isinstance(item, dict):
            stack.extend((key, depth + 1) for key in item)
            stack.extend((sub, depth + 1) for sub in item.values())
        elif isinstance(item, list):
            stack.extend((sub, depth + 1) for sub in item)


async def parse(request: Request, model: type[M]) -> M:
    return model.model_validate(await read_json(request))


def reply(model: BaseModel | dict[str, Any], status: int = 200) -> JSONResponse:
    body = model.model_dump(mode="json") if isinstance(model, BaseModel) else model
    return JSONResponse(body, status_code=status)


def path_param(request: Request, name: str) -> str:
    value: str = request.path_params[name]
    if name == "ws" and not _WORKSPACE.match(value):
        raise NotFound(f"workspace {value} does not exist")
    if name == "user" and not _USER.match(value):
        raise ApiError("invalid_request", f"user {value!r} is not a valid user name")
    return value


def query(request: Request) -> QueryParams:
    """The query parameters, refused if any holds a NUL (PostgreSQL can't store or compare it)."""
    params = request.query_params
    for name, value in params.multi_items():
        if "\x00" in name or "\x00" in value:
            raise ApiError("invalid_request", f"?{name!r}= contains a NUL character")
    return params


def flag(request: Request, name: str) -> bool:
    value = request.query_params.get(name, "false").lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise ApiError("invalid_request", f"?{name}= must be true or false")
    return value in ("true", "1", "yes")


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError("invalid_request", f"?{name}= must be an integer") from None
    if not low <= value <= high:
        raise ApiError("invalid_request", f"?{name}= must be between {low} and {high}")
    return value


# --- §1 workspaces and schemas -------------------------------------------------
async def create_workspace(request: Request) -> Response:
    s = services(request)
    await s.guard(request, "admin", None)
    body = await parse(request, m.CreateWorkspace)
    connector = body.connector.model_dump(mode="json")
    await run_in_threadpool(s.app.create_workspace, body.id, connector)
    return reply(m.WorkspaceCreated(id=body.id, connector=connector), 201)


async def put_connector(request: Request) -> Response:
    s = services(request)
    ws = path_param(request, "ws")
    await s.guard(request, "admin", ws)
    body = await parse(request, m.ConnectorConfig)
    connector = body.model_dump(mode="json")
    await run_in_threadpool(s.app.change_connector, ws, connector)
    return reply(m.WorkspaceCreated(id=ws, connector=connector))


async def get_workspace(request: Request) -> Response:
    s = services(request)
    ws = path_param(request, "ws")
    await s.guard(request, "read", ws)
    workspace = await run_in_threadpool(s.app.workspace, ws)
    return reply(
        m.WorkspaceInfo(
            id=ws,
            main_version=workspace.main_version,
            publishing=workspace.publishing,
            folders=sorted(workspace.schemas),
        )
    )


async def put_schema(request: Request) -> Response:
    s = services(request)
    ws = path_param(request, "ws")
    await s.guard(request, "write", ws)
    body = await parse(request, m.FolderSchemaBody)
    folder = request.path_params["folder"]
    schema = await run_in_threadpool(
        s.app.register_schema, ws, folder, body.model_dump(mode="json")
    )
    return reply(m.FolderSchemaOut(folder=folder, **schema))


# --- §2 pull -------------------------------------------------------------------
async def start_pull(request: Request) -> Response:
    s = services(request)
    ws = path_param(request, "ws")
    await s.guard(request, "write", ws)
    raw = await request.body()
    body = (
        m.PullRequest.model_validate(await read_json(request)) if raw.strip() else m.PullRequest()
    )
    wait = flag(request, "wait")
    pull = await run_in_threadpool(s.app.start_pull, ws, body.folders)
    if not wait:
        s.start_background_pull(pull.pull_id)
        return reply(m.PullAccepted(pull_id=pull.pull_id), 202)
    done = await s.pull_now(pull.pull_id)
    return reply(m.PullResult(pull_id=done.pull_id, state=done.state, **done.counts))


# --- §3 files and drafts ---------------------------------------------------------
async def get_file(request: Request) -> Response:
    s = services(request)
    ws = path_param(request, "ws")
    await s.guard(request, "read", ws)
    user = request.query_params.get("draft")
    if user is not None and not _USER.match(user):
        raise ApiError("invalid_request", f"draft user {user!r} is not a valid user name")
    content = await run_in_threadpool(s.app.read_file, ws, request.path_params["path"], user)
    return reply(content)


async def put_draft_file(request: Request) -> Response:
    s = services(request)
    ws, user = path_param(request, "ws"), path_param(request, "user")
    await s.guard(request, "write", ws)
    content = await read_json(request)
    path = request.path_params["path"]
    await run_in_threadpool(s.app.write_draft_file, ws, user, path, content)
    return reply({"path": path, "content": content})


async def delete_draft_file(request: Request) -> Response:
    s = services(request)
    ws, user = path_param(request, "ws"), path_param(request, "user")
    await s.guard(request, "write", ws)
    await run_in_threadpool(s.app.delete_draft_file, ws, user, request.path_params["path"])
    return Response(status_code=204)


async def draft_changes(request: Request) -> Response:
    s = services(request)
    ws, user = path_param(request, "ws"), path_param(request, "user")
    await s.guard(request, "read", ws)
    return reply(await run_in_threadpool(s.app.draft_changes, ws, user))


async def discard_draft(request: Request) -> Response:
    s = services(request)
    ws, user = path_param(request, "ws"), path_param(request, "user")
    await s.guard(request, "write", ws)
    await run_in_threadpool(s.app.discard_draft, ws, user)
    return Response(status_code=204)


# --- §4 plan and run -------------------------------------------------------------
async def plan(request: Request) -> Response:
    s = services(request)
    ws, user = path_param(request, "ws"), path_param(request, "user")
    await s.guard(request, "publish", ws)
    pipeline = await run_in_threadpool(s.app.plan, ws, user)
    entries = [
        {k: e[k] for k in ("path", "phase", "operation", "deferred_fields", "depends_on")}
        for e in pipeline.entries.values()
    ]
    return reply(
        {
            "pipeline_id": pipeline.pipeline_id,
            "workspace": ws,
            "user": user,
            "state": pipeline.state,
            "main_version": pipeline.main_version,
            "draft_version": pipeline.draft_version,
            "phases": [
                {"phase": p, "entries": len(pipeline.entries_of(p))} for p in pipeline.phases
            ],
            "entries": entries,
        },
        201,
    )


async def _pipeline_workspace(request: Request, scope: str) -> tuple[Services, str]:
    s = services(request)
    pipeline_id = request.path_params["pipeline_id"]
    principal = await s.authenticate(request)  # 401 before anything is revealed
    pipeline = await run_in_threadpool(s.app.pipeline, pipeline_id)
    s.authorize(principal, scope, pipeline.workspace_id)
    return s, pipeline_id


async def _run_reply(s: Services, request: Request, pipeline_id: str, state: str) -> Response:
    s.wake_worker()
    if flag(request, "wait"):
        return reply(await s.wait_for_end(pipeline_id))
    return reply(m.RunAccepted(pipeline_id=pipeline_id, state=state), 202)


async def run_pipeline(request: Request) -> Response:
    s, pipeline_id = await _pipeline_workspace(request, "publish")
    pipeline = await run_in_threadpool(s.app.request_run, pipeline_id)
    return await _run_reply(s, request, pipeline_id, pipeline.state)


async def publish(request: Request) -> Response:
    s = services(request)
    ws, user = path_param(request, "ws"), path_param(request, "user")
    await s.guard(request, "publish", ws)
    # Refuse before planning, or every refused publish leaves a planned pipeline behind.
    # (A lock taken between this check and request_run still does; the check is cheap.)
    workspace = await run_in_threadpool(s.app.workspace, ws)
    workspace.ensure_not_publishing()
    planned = await run_in_threadpool(s.app.plan, ws, user)
    pipeline = await run_in_threadpool(s.app.request_run, planned.pipeline_id)
    return await _run_reply(s, request, planned.pipeline_id, pipeline.state)


async def cancel_pipeline(request: Request) -> Response:
    s, pipeline_id = await _pipeline_workspace(request, "publish")
    pipeline = await run_in_threadpool(s.app.request_cancel, pipeline_id)
    return reply(m.RunAccepted(pipeline_id=pipeline_id, state=pipeline.state), 202)


async def retry_pipeline(request: Request) -> Response:
    s, pipeline_id = await _pipeline_workspace(request, "publish")
    pipeline = await run_in_threadpool(s.app.request_retry, pipeline_id)
    return await _run_reply(s, request, pipeline_id, pipeline.state)


# --- §5 status ---------------------------------------------------------------------
async def pipeline_status(request: Request) -> Response:
    s, pipeline_id = await _pipeline_workspace(request, "read")
    return reply(await run_in_threadpool(s.pipeline_status, pipeline_id))


async def list_pipelines(request: Request) -> Response:
    s = services(request)
    principal = await s.authenticate(request)
    q = query(request)
    ws = q.get("workspace")
    if ws is None and not principal.admin:
        ws = principal.workspace
    s.authorize(principal, "read", ws)
    state = q.get("state")
    states = (
        "planned",
        "running",
        "completed",
        "completed_with_errors",
        "failed",
        "cancelled",
        "stale",
    )
    if state is not None and state not in states:
        raise ApiError("invalid_request", f"?state= must be one of {', '.join(states)}")
    limit = int_param(request, "limit", 50, 1, 500)
    found = await run_in_threadpool(
        s.list_pipelines, ws, q.get("user"), state, limit, q.get("before")
    )
    return reply({"pipelines": found})


async def pipeline_entries(request: Request) -> Response:
    s, pipeline_id = await _pipeline_workspace(request, "read")
    phase = request.query_params.get("phase")
    status = request.query_params.get("status")
    if phase is not None and phase not in ("edit", "create", "delete", "backfill"):
        raise ApiError("invalid_request", "?phase= must be edit, create, delete or backfill")
    if status is not None and status not in ("planned", "published", "failed", "skipped"):
        raise ApiError("invalid_request", "?status= must be planned, published, failed or skipped")
    entries = await run_in_threadpool(s.pipeline_entries, pipeline_id, phase, status)
    return reply({"entries": entries})


# --- §7 indexes ----------------------------------------------------------------------
async def file_index(request: Request) -> Response:
    s = services(request)
    ws = path_param(request, "ws")
    await s.guard(request, "read", ws)
    q = query(request)
    folder = q.get("folder")
    if not folder or ("record_id" in q) == ("filename" in q):
        raise ApiError(
            "invalid_request", "give ?folder= and exactly one of ?record_id= or ?filename="
        )
    row = await run_in_threadpool(s.file_index, ws, folder, q.get("record_id"), q.get("filename"))
    return reply(row)


async def references(request: Request) -> Response:
    s = services(request)
    ws = path_param(request, "ws")
    await s.guard(request, "read", ws)
    q = query(request)
    target, folder, record_id = q.get("target"), q.get("folder"), q.get("record_id")
    if (target is None) == (folder is None and record_id is None) or (
        target is None and not (folder and record_id)
    ):
        raise ApiError(
            "invalid_request", "give ?target=@/folder/name.json, or ?folder= and ?record_id="
        )
    found = await run_in_threadpool(s.references, ws, target, folder, record_id)
    return reply({"references": found})


async def healthz(request: Request) -> Response:
    return reply(m.Health(status="ok"))
