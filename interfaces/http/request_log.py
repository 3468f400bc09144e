"""Each request's ids, and its line in the access log.

A request keeps the ``X-Request-Id`` it brings (when it is a plain token of at
most 64 characters) or gets a new one; its trace id comes from a W3C
``traceparent`` header, else is new. Both are bound for the request's log
lines (``application/log_context.py``) and answered in ``X-Request-Id`` and
``X-Trace-Id``. The workspace and pipeline a path names are bound too, so an
endpoint's lines say what they were about without each endpoint saying it.

The access line (logger ``publishd.access``) is written when the response
ends: method, path (the query string is left out: a stream ticket travels
there), status, duration, client address. A stream's line comes when the
stream closes, with how long it was open.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from application import log_context

access = logging.getLogger("publishd.access")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-(?P<trace>[0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
_WORKSPACE = re.compile(r"^/workspaces/(?P<ws>[a-z0-9][a-z0-9-]{0,62})(?:/|$)")
_PIPELINE = re.compile(r"^/pipelines/(?P<id>[0-9a-fA-F-]{36})(?:/|$)")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def ids_of(scope: Scope) -> tuple[str, str]:
    """The request id and trace id of a request, taken from its headers or new."""
    given = _header(scope, b"x-request-id")
    request_id = given if given and _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
    parent = _header(scope, b"traceparent")
    found = _TRACEPARENT.fullmatch(parent) if parent else None
    trace = found.group("trace") if found and found.group("trace") != "0" * 32 else None
    return request_id, trace or uuid.uuid4().hex


class RequestLog:
    """ASGI middleware, outermost: ids bound for the whole request, one access line at its end."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id, trace = ids_of(scope)
        path: str = scope.get("path", "")
        workspace = m.group("ws") if (m := _WORKSPACE.match(path)) else None
        pipeline = m.group("id").lower() if (m := _PIPELINE.match(path)) else None
        status = 0
        started = time.perf_counter()

        async def send_with_ids(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                headers.append((b"x-request-id", request_id.encode()))
                headers.append((b"x-trace-id", trace.encode()))
                message = {**message, "headers": headers}
            await send(message)

        with log_context.bound(
            request_id=request_id, trace_id=trace, workspace=workspace, pipeline_id=pipeline
        ):
            try:
                await self.app(scope, receive, send_with_ids)
            finally:
                client = scope.get("client")
                duration_ms = (time.perf_counter() - started) * 1000
                access.info(
                    "%s %s %s %.1fms",
                    scope.get("method"),
                    path,
                    status or "-",
                    duration_ms,
                    extra={
                        "method": scope.get("method"),
                        "path": path,
                        "status": status or None,
                        "duration_ms": round(duration_ms, 2),
                        "client": client[0] if client else None,
                    },
                )
