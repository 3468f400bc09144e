"""The Starlette application: routes from the endpoint registry, streams, auth, limits."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from interfaces.http import commands as c
from interfaces.http import models as m
from interfaces.http.errors import ApiError, error_response, install_error_handlers
from interfaces.http.registry import Endpoint, Query, openapi
from interfaces.services import Services

WAIT = Query("wait", {"type": "boolean"})
JSON_OBJECT: dict[str, Any] = {"type": "object"}


def endpoints() -> list[Endpoint]:
    """Every command and query endpoint of API.md, in one table."""
    ws = "/workspaces/{ws}"
    draft = ws + "/drafts/{user}"
    return [
        Endpoint("GET", "/healthz", c.healthz, "Liveness", responses={200: m.Health}, auth=False),
        Endpoint(
            "POST",
            "/workspaces",
            c.create_workspace,
            "Create a workspace",
            m.CreateWorkspace,
            {201: m.WorkspaceCreated},
            (409,),
        ),
        Endpoint("GET", ws, c.get_workspace, "A workspace", responses={200: m.WorkspaceInfo}),
        Endpoint(
            "PUT",
            ws + "/connector",
            c.put_connector,
            "Point the workspace at another address of its service",
            m.ConnectorConfig,
            {200: m.WorkspaceCreated},
            (409,),
        ),
        Endpoint(
            "PUT",
            ws + "/schemas/{folder:path}",
            c.put_schema,
            "Register a folder schema",
            m.FolderSchemaBody,
            {200: m.FolderSchemaOut},
            (409,),
        ),
        Endpoint(
            "POST",
            ws + "/pulls",
            c.start_pull,
            "Pull main from the service",
            None,
            {202: m.PullAccepted, 200: m.PullResult},
            (409,),
            (WAIT,),
        ),
        Endpoint(
            "GET",
            ws + "/files/{path:path}",
            c.get_file,
            "A file on main or in a draft",
            responses={200: None},
            query=(Query("draft", {"type": "string"}),),
        ),
        Endpoint(
            "PUT",
            draft + "/files/{path:path}",
            c.put_draft_file,
            "Write a draft file",
            JSON_OBJECT,
            {200: None},
            (409,),
        ),
        Endpoint(
            "DELETE",
            draft + "/files/{path:path}",
            c.delete_draft_file,
            "Delete a file in the draft",
            responses={204: None},
            errors=(409,),
        ),
        Endpoint(
            "GET",
            draft + "/changes",
            c.draft_changes,
            "The draft's changes",
            responses={200: m.DraftChanges},
        ),
        Endpoint(
            "DELETE",
            draft,
            c.discard_draft,
            "Discard the draft",
            responses={204: None},
            errors=(409,),
        ),
        Endpoint("POST", draft + "/plans", c.plan, "Plan a publish", None, {201: m.PlanOut}),
        Endpoint(
            "POST",
            draft + "/publish",
            c.publish,
            "Plan and run",
            None,
            {202: m.RunAccepted, 200: m.PipelineStatus},
            (409,),
            (WAIT,),
        ),
        Endpoint(
            "POST",
            "/pipelines/{pipeline_id}/run",
            c.run_pipeline,
            "Run a plan",
            None,
            {202: m.RunAccepted, 200: m.PipelineStatus},
            (409,),
            (WAIT,),
        ),
        Endpoint(
            "POST",
            "/pipelines/{pipeline_id}/cancel",
            c.cancel_pipeline,
            "Cancel",
            None,
            {202: m.RunAccepted},
            (409,),
        ),
        Endpoint(
            "POST",
            "/pipelines/{pipeline_id}/retry",
            c.retry_pipeline,
            "Retry failed and skipped entries",
            None,
            {202: m.RunAccepted, 200: m.PipelineStatus},
            (409,),
            (WAIT,),
        ),
        Endpoint(
            "GET",
            "/pipelines/{pipeline_id}",
            c.pipeline_status,
            "A pipeline's status",
            responses={200: m.PipelineStatus},
        ),
        Endpoint(
            "GET",
            "/pipelines",
            c.list_pipelines,
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
            "/pipelines/{pipeline_id}/entries",
            c.pipeline_entries,
            "A pipeline's entries",
            responses={200: m.EntryList},
            query=(Query("phase", {"type": "string"}), Query("status", {"type": "string"})),
        ),
        Endpoint(
            "GET",
            ws + "/file-index",
            c.file_index,
            "FileIndex lookup",
            responses={200: m.FileIndexRow},
            query=(
                Query("folder", {"type": "string"}, True),
                Query("record_id", {"type": "string"}),
                Query("filename", {"type": "string"}),
            ),
        ),
        Endpoint(
            "GET",
            ws + "/references",
            c.references,
            "Who points at a file",
            responses={200: m.ReferenceList},
            query=(
                Query("target", {"type": "string"}),
                Query("folder", {"type": "string"}),
                Query("record_id", {"type": "string"}),
            ),
        ),
    ]


async def _routed_elsewhere(request: Request) -> Response:
    raise AssertionError("documentation only: the real route is built elsewhere")


def documented_elsewhere(*, metrics: bool) -> list[Endpoint]:
    """Routes built outside the table above (streams, tickets, metrics, the document itself).

    They are described here so that ``/openapi.json`` covers all of API.md; only
    their OpenAPI entries come from these declarations, never their routes.
    """
    resume = (
        Query("after", {"type": "integer", "minimum": 0}),
        Query("ticket", {"type": "string"}),
    )
    follow = Query("follow", {"type": "boolean"})
    streams = ("text/event-stream", "application/x-ndjson")

    def stream(path: str, summary: str, operation: str, *query: Query) -> Endpoint:
        return Endpoint(
            "GET",
            path,
            _routed_elsewhere,
            summary,
            responses={200: None},
            query=(*resume, *query),
            media_types=streams,
            operation_id=operation,
        )

    found = [
        stream("/pipelines/{pipeline_id}/events", "A pipeline's events", "pipeline_events"),
        stream("/workspaces/{ws}/events", "A workspace's events", "workspace_events", follow),
        stream("/events", "Every event (admin)", "global_events", follow),
        Endpoint(
            "POST",
            "/stream-tickets",
            _routed_elsewhere,
            "A short-lived single-use ticket for ?ticket= on streams",
            responses={201: m.StreamTicket},
            operation_id="create_stream_ticket",
        ),
        Endpoint(
            "GET",
            "/openapi.json",
            _routed_elsewhere,
            "This document",
            responses={200: None},
            auth=False,
            media_types=("application/json",),
            operation_id="openapi_document",
        ),
    ]
    if metrics:
        found.append(
            Endpoint(
                "GET",
                "/metrics",
                _routed_elsewhere,
                "Prometheus metrics (admin)",
                responses={200: None},
                media_types=("text/plain",),
                operation_id="metrics",
            )
        )
    return found


class BodyLimit:
    """413 for bodies over the limit, checked on Content-Length and while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._too_large(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        # Raised inside the handler's ``request.body()``: the app's error table answers it
        # (catching it out here would start a second response after the app's 500).
        await self.app(scope, limited, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response("payload_too_large", _TooLarge(self.max_bytes).message)
        await response(scope, receive, send)


class _TooLarge(ApiError):
    def __init__(self, max_bytes: int) -> None:
        super().__init__("payload_too_large", f"the request body is larger than {max_bytes} bytes")


def create_app(
    services: Services,
    *,
    extra_routes: Sequence[BaseRoute] = (),
    metrics: Callable[[Request], Any] | None = None,
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[None]] | None = None,
    max_request_bytes: int = 5 * 1024 * 1024,
) -> ASGIApp:
    table = endpoints()
    document = openapi(
        [*table, *documented_elsewhere(metrics=metrics is not None)], "publishd", "0.1.0"
    )

    async def openapi_json(_: Request) -> Response:
        return JSONResponse(document)

    routes: list[BaseRoute] = [ep.route() for ep in table]
    routes.append(Route("/openapi.json", openapi_json, methods=["GET"]))
    if metrics is not None:
        routes.append(Route("/metrics", metrics, methods=["GET"]))
    routes.extend(extra_routes)
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.services = services
    install_error_handlers(app)
    return BodyLimit(app, max_request_bytes)
