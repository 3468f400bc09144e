"""What every endpoint does on the way in and out: read the request, write the reply.

Everything a request carries is checked here before an application method sees
it, so that nothing PostgreSQL cannot store or compare (a NUL, an unbounded
nesting) is ever recorded: a recorded event that breaks its readers would stop
the projections for everyone.
"""

from __future__ import annotations

import re
from typing import TypeVar

import msgspec
from pydantic import BaseModel
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse

from domain.errors import NotFound
from domain.json_types import JsonValue
from interfaces.http import models as m
from interfaces.http.errors import ApiError

M = TypeVar("M", bound=BaseModel)
_WORKSPACE = re.compile(m.WORKSPACE_ID)
_USER = re.compile(m.USER_ID)
_BODY = msgspec.json.Decoder()

MAX_JSON_DEPTH = 64
"""Deeper bodies are refused: recording and replaying them recurses once per level."""


async def read_json(request: Request) -> JsonValue:
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


def _check_storable(value: JsonValue) -> None:
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


async def parse_optional(request: Request, model: type[M]) -> M:
    """``model`` from the body, or its defaults when the body is empty."""
    raw = await request.body()
    return await parse(request, model) if raw.strip() else model()


def reply(body: BaseModel | JsonValue, status: int = 200) -> JSONResponse:
    content = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
    return JSONResponse(content, status_code=status)


def workspace_param(request: Request) -> str:
    """``{ws}``: a name no workspace can have is simply not found."""
    value: str = request.path_params["ws"]
    if not _WORKSPACE.match(value):
        raise NotFound(f"workspace {value} does not exist")
    return value


def user_param(request: Request) -> str:
    value: str = request.path_params["user"]
    if not _USER.match(value):
        raise ApiError("invalid_request", f"user {value!r} is not a valid user name")
    return value


def draft_params(request: Request) -> tuple[str, str]:
    """``{ws}`` and ``{user}`` of a draft's path."""
    return workspace_param(request), user_param(request)


def path_param(request: Request, name: str) -> str:
    """A path parameter the route's converter has already shaped (a folder, a file path)."""
    value: str = request.path_params[name]
    return value


def query(request: Request) -> QueryParams:
    """The query parameters, refused if any holds a NUL (PostgreSQL can't store or compare it)."""
    params = request.query_params
    for name, value in params.multi_items():
        if "\x00" in name or "\x00" in value:
            raise ApiError("invalid_request", f"?{name!r}= contains a NUL character")
    return params


def draft_user_query(request: Request) -> str | None:
    """``?draft=``: whose draft to read through, or ``None`` for main."""
    user = request.query_params.get("draft")
    if user is not None and not _USER.match(user):
        raise ApiError("invalid_request", f"draft user {user!r} is not a valid user name")
    return user


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


def choice(request: Request, name: str, allowed: tuple[str, ...], message: str) -> str | None:
    """``?name=`` if given, refused with ``message`` unless it is one of ``allowed``."""
    value = request.query_params.get(name)
    if value is not None and value not in allowed:
        raise ApiError("invalid_request", message)
    return value
