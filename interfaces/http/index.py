"""API.md §7: the FileIndex (record id <-> filename) and who references a file."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from interfaces.http import models as m
from interfaces.http.errors import ApiError
from interfaces.http.parsing import query, reply, workspace_param
from interfaces.http.registry import Endpoint, Query
from interfaces.http.services import Services


async def file_index(request: Request) -> Response:
    s = Services.of(request)
    ws = workspace_param(request)
    await s.guard(request, "read", ws)
    q = query(request)
    folder = q.get("folder")
    if not folder or ("record_id" in q) == ("filename" in q):
        raise ApiError(
            "invalid_request", "give ?folder= and exactly one of ?record_id= or ?filename="
        )
    row = await run_in_threadpool(
        s.queries.file_index, ws, folder, q.get("record_id"), q.get("filename")
    )
    return reply(row)


async def references(request: Request) -> Response:
    s = Services.of(request)
    ws = workspace_param(request)
    await s.guard(request, "read", ws)
    q = query(request)
    target, folder, record_id = q.get("target"), q.get("folder"), q.get("record_id")
    if (target is None) == (folder is None and record_id is None) or (
        target is None and not (folder and record_id)
    ):
        raise ApiError(
            "invalid_request", "give ?target=@/folder/name.json, or ?folder= and ?record_id="
        )
    found = await run_in_threadpool(s.queries.references, ws, target, folder, record_id)
    return reply({"references": found})


ENDPOINTS = [
    Endpoint(
        "GET",
        "/workspaces/{ws}/file-index",
        file_index,
        "FileIndex lookup",
        responses={200: m.FileIndexEntryBody},
        query=(
            Query("folder", {"type": "string"}, True),
            Query("record_id", {"type": "string"}),
            Query("filename", {"type": "string"}),
        ),
    ),
    Endpoint(
        "GET",
        "/workspaces/{ws}/references",
        references,
        "Who points at a file",
        responses={200: m.ReferenceList},
        query=(
            Query("target", {"type": "string"}),
            Query("folder", {"type": "string"}),
            Query("record_id", {"type": "string"}),
        ),
    ),
]
