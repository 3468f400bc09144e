"""The one table that maps errors to HTTP responses.

Every 4xx/5xx body is ``{"error": code, "message": text, "details": ...}``.
Endpoints never build error responses themselves: they raise, and the
handlers installed by ``install_error_handlers`` answer.

The database being unreachable (a connection refused or lost, a pool that
waited its bounded timeout, a read-your-writes wait that timed out) is 503
``unavailable`` with ``Retry-After``, wherever it surfaces: auth's token
lookup, a command, a query, a stream's ticket or replay.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from domain.errors import DomainError
from domain.json_types import JsonObject, JsonValue
from infrastructure.postgres.availability import UNAVAILABLE_ERRORS

log = logging.getLogger(__name__)

STATUS_BY_CODE: dict[str, int] = {
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "request_timeout": 408,
    "conflict": 409,
    "stale_plan": 409,
    "publish_in_progress": 409,
    "pull_in_progress": 409,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "invalid_request": 422,
    "invalid_path": 422,
    "dangling_references": 422,
    "nothing_to_publish": 422,
    "rate_limited": 429,
    "refresh_failed": 502,
    "unavailable": 503,
}


class ApiError(Exception):
    """An error raised by the interface layer itself (auth, parsing, limits)."""

    def __init__(self, code: str, message: str, details: JsonValue = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


def error_response(code: str, message: str, details: JsonValue = None) -> JSONResponse:
    body: JsonObject = {"error": code, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse(body, status_code=STATUS_BY_CODE.get(code, 500))


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.code, exc.message, exc.details)


async def _domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    return error_response(exc.code, exc.message, exc.details)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ValidationError)
    details = [
        {"loc": list(e["loc"]), "message": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_input=False)
    ]
    return error_response("invalid_request", "the request body is not valid", details)


_HTTP_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


async def _http_exception(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "invalid_request")
    response = error_response(code, str(exc.detail))
    response.status_code = exc.status_code
    return response


UNAVAILABLE_RETRY_AFTER = 2
"""Seconds a client is asked to wait before retrying during an outage."""


async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
    # the exception's text names the server (socket path, host): logged, never sent
    log.warning("database unavailable: %s: %s", type(exc).__name__, exc)
    message = (
        "the database did not answer in time, retry later"
        if isinstance(exc, TimeoutError)
        else "the database is unreachable, retry later"
    )
    response = error_response("unavailable", message)
    response.headers["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER)
    return response


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=exc)
    return JSONResponse(
        {"error": "internal", "message": "an unexpected error occurred"}, status_code=500
    )


def install_error_handlers(app: Starlette) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(ValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_exception)
    for unavailable in (*UNAVAILABLE_ERRORS, TimeoutError):
        app.add_exception_handler(unavailable, _unavailable)
    app.add_exception_handler(Exception, _unexpected)
