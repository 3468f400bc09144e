"""API.md §1: workspaces, their connector, and their folders' schemas."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from interfaces.http import models as m
from interfaces.http.parsing import parse, path_param, reply, workspace_param
from interfaces.http.registry import Endpoint
from interfaces.http.services import Services


async def create_workspace(request: Request) -> Response:
    s = Services.of(request)
    await s.guard(request, "admin", None)
    body = await parse(request, m.CreateWorkspace)
    connector = body.connector.recorded()
    await run_in_threadpool(s.app.create_workspace, body.id, connector)
    return reply(m.WorkspaceCreated(id=body.id, connector=connector), 201)


async def put_connector(request: Request) -> Response:
    s = Services.of(request)
    ws = workspace_param(request)
    await s.guard(request, "admin", ws)
    body = await parse(request, m.ConnectorConfig)
    connector = body.recorded()
    await run_in_threadpool(s.app.change_connector, ws, connector)
    return reply(m.WorkspaceCreated(id=ws, connector=connector))


async def get_workspace(request: Request) -> Response:
    s = Services.of(request)
    ws = workspace_param(request)
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


async def list_workspaces(request: Request) -> Response:
    """An admin sees every workspace; a workspace's token sees its own."""
    s = Services.of(request)
    principal = await s.authenticate(request)
    only = None if principal.admin else principal.workspace
    s.authorize(principal, "read", only)
    found = await run_in_threadpool(s.queries.workspaces, only)
    return reply({"workspaces": found})


async def list_drafts(request: Request) -> Response:
    s = Services.of(request)
    ws = workspace_param(request)
    await s.guard(request, "read", ws)
    return reply({"drafts": await run_in_threadpool(s.queries.drafts, ws)})


async def put_schema(request: Request) -> Response:
    s = Services.of(request)
    ws = workspace_param(request)
    await s.guard(request, "write", ws)
    body = await parse(request, m.FolderSchemaBody)
    folder = path_param(request, "folder")
    schema = await run_in_threadpool(
        s.app.register_schema, ws, folder, body.model_dump(mode="json")
    )
    return reply(m.FolderSchemaOut(folder=folder, **schema))


WORKSPACE = "/workspaces/{ws}"

ENDPOINTS = [
    Endpoint(
        "POST",
        "/workspaces",
        create_workspace,
        "Create a workspace",
        m.CreateWorkspace,
        {201: m.WorkspaceCreated},
        (409,),
    ),
    Endpoint(
        "GET",
        "/workspaces",
        list_workspaces,
        "Workspaces (an admin's: all; a workspace token's: its own)",
        responses={200: m.WorkspaceList},
    ),
    Endpoint("GET", WORKSPACE, get_workspace, "A workspace", responses={200: m.WorkspaceInfo}),
    Endpoint(
        "GET",
        WORKSPACE + "/drafts",
        list_drafts,
        "The drafts that change something, by user",
        responses={200: m.DraftList},
    ),
    Endpoint(
        "PUT",
        WORKSPACE + "/connector",
        put_connector,
        "Point the workspace at another address of its service",
        m.ConnectorConfig,
        {200: m.WorkspaceCreated},
        (409,),
    ),
    Endpoint(
        "PUT",
        WORKSPACE + "/schemas/{folder:path}",
        put_schema,
        "Register a folder schema",
        m.FolderSchemaBody,
        {200: m.FolderSchemaOut},
        (409,),
    ),
]
