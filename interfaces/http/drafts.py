"""API.md §3: files on main, and each user's draft of changes to them."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from domain.json_types import JsonObject
from interfaces.http import models as m
from interfaces.http.parsing import (
    draft_params,
    draft_user_query,
    path_param,
    read_json,
    reply,
    workspace_param,
)
from interfaces.http.registry import Endpoint, Query
from interfaces.http.services import Services


async def get_file(request: Request) -> Response:
    s = Services.of(request)
    ws = workspace_param(request)
    await s.guard(request, "read", ws)
    user = draft_user_query(request)
    content = await run_in_threadpool(s.queries.read_file, ws, path_param(request, "path"), user)
    return reply(content)


async def put_draft_file(request: Request) -> Response:
    s = Services.of(request)
    ws, user = draft_params(request)
    await s.guard(request, "write", ws)
    content = await read_json(request)
    path = path_param(request, "path")
    await run_in_threadpool(s.app.write_draft_file, ws, user, path, content)
    return reply({"path": path, "content": content})


async def delete_draft_file(request: Request) -> Response:
    s = Services.of(request)
    ws, user = draft_params(request)
    await s.guard(request, "write", ws)
    await run_in_threadpool(s.app.delete_draft_file, ws, user, path_param(request, "path"))
    return Response(status_code=204)


async def draft_changes(request: Request) -> Response:
    s = Services.of(request)
    ws, user = draft_params(request)
    await s.guard(request, "read", ws)
    return reply(await run_in_threadpool(s.queries.draft_changes, ws, user))


async def discard_draft(request: Request) -> Response:
    s = Services.of(request)
    ws, user = draft_params(request)
    await s.guard(request, "write", ws)
    await run_in_threadpool(s.app.discard_draft, ws, user)
    return Response(status_code=204)


DRAFT = "/workspaces/{ws}/drafts/{user}"
ANY_JSON_OBJECT: JsonObject = {"type": "object"}
"""A file's content: any JSON object (its folder's schema is checked by the application)."""

ENDPOINTS = [
    Endpoint(
        "GET",
        "/workspaces/{ws}/files/{path:path}",
        get_file,
        "A file on main or in a draft",
        responses={200: None},
        query=(Query("draft", {"type": "string"}),),
    ),
    Endpoint(
        "PUT",
        DRAFT + "/files/{path:path}",
        put_draft_file,
        "Write a draft file",
        ANY_JSON_OBJECT,
        {200: None},
        (409,),
    ),
    Endpoint(
        "DELETE",
        DRAFT + "/files/{path:path}",
        delete_draft_file,
        "Delete a file in the draft",
        responses={204: None},
        errors=(409,),
    ),
    Endpoint(
        "GET",
        DRAFT + "/changes",
        draft_changes,
        "The draft's changes",
        responses={200: m.DraftChanges},
    ),
    Endpoint(
        "DELETE",
        DRAFT,
        discard_draft,
        "Discard the draft",
        responses={204: None},
        errors=(409,),
    ),
]
