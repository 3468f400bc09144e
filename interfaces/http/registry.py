"""One declaration per endpoint: it yields both the Starlette route and its OpenAPI entry.

So ``/openapi.json`` is generated from the same pydantic models the handlers
parse and answer with, and the two cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from domain.json_types import JsonObject
from interfaces.http.models import ErrorBody
from interfaces.http.rate_limit import UNLIMITED_PATHS

Handler = Callable[[Request], Awaitable[Response]]

_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    413: "Payload too large",
    422: "Invalid request",
    429: "Rate limited",
}


@dataclass(frozen=True)
class Query:
    name: str
    schema: JsonObject
    required: bool = False


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    body: type[BaseModel] | JsonObject | None = None
    responses: dict[int, type[BaseModel] | None] = field(default_factory=dict)
    errors: tuple[int, ...] = ()
    query: tuple[Query, ...] = ()
    auth: bool = True
    content_type: str = "application/json"
    media_types: tuple[str, ...] = ()
    """Success bodies that are not JSON models (streams, metrics): each one a string."""
    operation_id: str | None = None

    def route(self) -> Route:
        return Route(self.path, self.handler, methods=[self.method])


WAIT = Query("wait", {"type": "boolean"})
"""``?wait=true``: answer when the work is done instead of 202 at once."""


async def _routed_elsewhere(request: Request) -> Response:
    raise AssertionError("documentation only: the real route is built elsewhere")


def documented(
    method: str,
    path: str,
    summary: str,
    operation_id: str,
    *,
    responses: dict[int, type[BaseModel] | None],
    query: tuple[Query, ...] = (),
    auth: bool = True,
    media_types: tuple[str, ...] = (),
) -> Endpoint:
    """The OpenAPI entry of a route built outside the endpoint tables.

    Streams, tickets and metrics are routed by closures over parts the tables
    cannot hold (the event feed, the authenticator, the collectors); declaring
    them here still lets ``/openapi.json`` cover all of API.md.
    """
    return Endpoint(
        method,
        path,
        _routed_elsewhere,
        summary,
        responses=responses,
        query=query,
        auth=auth,
        media_types=media_types,
        operation_id=operation_id,
    )


def _openapi_path(path: str) -> tuple[str, list[str]]:
    names = re.findall(r"{(\w+)(?::\w+)?}", path)
    return re.sub(r"{(\w+)(?::\w+)?}", r"{\1}", path), names


def openapi(endpoints: list[Endpoint], title: str, version: str) -> JsonObject:
    """The OpenAPI 3.1 document for these endpoints."""
    schemas: JsonObject = {}

    def ref(model: type[BaseModel]) -> JsonObject:
        doc = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in doc.pop("$defs", {}).items():
            schemas[name] = sub
        schemas[model.__name__] = doc
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    paths: JsonObject = {}
    for ep in endpoints:
        path, names = _openapi_path(ep.path)
        op: JsonObject = {
            "summary": ep.summary,
            "operationId": ep.operation_id or ep.handler.__name__,
        }
        params = [
            {
                "name": n,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "minLength": 1, "pattern": "^[^/]+$"},
            }
            for n in names
        ]
        params += [
            {"name": q.name, "in": "query", "required": q.required, "schema": q.schema}
            for q in ep.query
        ]
        if params:
            op["parameters"] = params
        if ep.body is not None:
            schema = ep.body if isinstance(ep.body, dict) else ref(ep.body)
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": schema}},
            }
        responses: JsonObject = {}
        for status, model in ep.responses.items():
            entry: JsonObject = {"description": _STATUS_TEXT.get(status, "OK")}
            if model is not None:
                entry["content"] = {ep.content_type: {"schema": ref(model)}}
            elif ep.media_types and status < 300:
                entry["content"] = {
                    t: {"schema": {"type": "object" if t == "application/json" else "string"}}
                    for t in ep.media_types
                }
            responses[str(status)] = entry
        error_ref = ref(ErrorBody)
        statuses = set(ep.errors) | ({401, 403, 404} if ep.auth else set())
        if ep.path not in UNLIMITED_PATHS:
            statuses.add(429)  # every caller is rate-limited (interfaces.http.rate_limit)
        if ep.body is not None:
            statuses |= {413, 422}
        if params:
            statuses.add(422)
        for status in sorted(statuses):
            responses[str(status)] = {
                "description": _STATUS_TEXT.get(status, "Error"),
                "content": {"application/json": {"schema": error_ref}},
            }
        op["responses"] = responses
        if ep.auth:
            op["security"] = [{"bearer": []}]
        paths.setdefault(path, {})[ep.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
