"""What every endpoint does on the way in and out: read the request, write the reply.

Everything a request carries is checked here before an application method sees
it, so that nothing PostgreSQL cannot store or compare (a NUL, an unbounded
nesting) is ever recorded: a recorded event that breaks its readers would stop
the projections for everyone.
"""

from __future__ import annotations

import json
import re
from typing import TypeVar
from urllib.parse import unquote_to_bytes

import msgspec
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse

from domain.errors import NotFound
from domain.json_types import JsonValue
from domain.paths import HIDDEN
from interfaces.http import models as m
from interfaces.http.errors import ApiError

M = TypeVar("M", bound=BaseModel)
_WORKSPACE = re.compile(m.WORKSPACE_ID)
_USER = re.compile(m.USER_ID)
_BODY = msgspec.json.Decoder()

MAX_JSON_DEPTH = 64
"""Deeper bodies are refused: recording and replaying them recurses once per level."""
OFFLOAD_BYTES = 64 * 1024
"""Bodies this large are decoded and checked in a thread: a few megabytes of tiny
elements take seconds to walk, and on the event loop every other request would wait."""


async def read_json(request: Request) -> JsonValue:
    raw = await request.body()
    if len(raw) < OFFLOAD_BYTES:
        return decode_body(raw)
    return await run_in_threadpool(decode_body, raw)


MAX_VALUES = 200_000
"""Values a body may hold (counted, from above, as its commas plus one).

What a body costs to decode, check, record and replay grows with its values,
not its bytes, and part of that work (C decoders and encoders) holds the GIL,
and with it the event loop: 5 MB of 1.7 M tiny values would stall every other
request for well over 100 ms. No record of a CMS needs that many."""


def decode_body(raw: bytes) -> JsonValue:
    if not raw:
        raise ApiError("invalid_request", "the request needs a JSON body")
    if raw.count(b",") >= MAX_VALUES:
        raise ApiError("invalid_request", f"the body holds more than {MAX_VALUES:,} values")
    try:
        # msgspec, unlike the json module, refuses what JSON does not allow and
        # publishd could not store: NaN, Infinity, lone surrogates, invalid UTF-8.
        value = _BODY.decode(raw)
    except RecursionError:
        raise ApiError("invalid_request", "the body is nested too deeply") from None
    except msgspec.DecodeError as exc:
        raise ApiError("invalid_request", f"the body is not valid JSON: {exc}") from None
    keys = _check_storable(value)
    # Every key of the document is followed by a colon, so when the decoded value has
    # as many keys as the body has colons, none was dropped as a duplicate; only
    # bodies with colons inside strings (URLs, times) pay for the second, exact pass.
    if keys < raw.count(b":"):
        json.loads(raw, object_pairs_hook=_unique_keys)
    return value


def _unique_keys(pairs: list[tuple[str, JsonValue]]) -> dict[str, JsonValue]:
    """Refuse a repeated key: msgspec and json keep the last, silently dropping the others."""
    found: dict[str, JsonValue] = {}
    for key, value in pairs:
        if key in found:
            raise ApiError("invalid_request", f"the body repeats the key {key!r}")
        found[key] = value
    return found


def _check_storable(value: JsonValue) -> int:
    """Refuse what would be recorded and then break its readers.

    A NUL (``\\u0000``) is refused by every jsonb projection, so the projections
    would stop and every read-your-writes query would time out; a deeply nested
    body overflows Python's recursion limit where aggregates are copied and replayed.
    Returns how many keys the value's objects hold.
    """
    # Only containers go on the stack: a body of millions of scalars then allocates
    # nothing per element (a tuple each would wake the garbage collector, which
    # holds the GIL, and with it the event loop, for hundreds of milliseconds).
    keys = 0
    stack: list[tuple[JsonValue, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ApiError("invalid_request", f"the body nests deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(item, dict):
            keys += len(item)
            children: list[JsonValue] = [*item, *item.values()]
        elif isinstance(item, list):
            children = item
        else:
            children = [item]
            depth -= 1
        if children and depth >= MAX_JSON_DEPTH:
            raise ApiError("invalid_request", f"the body nests deeper than {MAX_JSON_DEPTH} levels")
        for sub in children:
            if isinstance(sub, str):
                if "\x00" in sub:
                    raise ApiError("invalid_request", "the body contains a NUL character (\\u0000)")
            elif isinstance(sub, dict | list):
                stack.append((sub, depth + 1))
    return keys


async def parse(request: Request, model: type[M]) -> M:
    raw = await request.body()
    if len(raw) < OFFLOAD_BYTES:
        return model.model_validate(decode_body(raw))
    return await run_in_threadpool(lambda: model.model_validate(decode_body(raw)))


async def parse_optional(request: Request, model: type[M]) -> M:
    """``model`` from the body, or its defaults when the body is empty."""
    raw = await request.body()
    return await parse(request, model) if raw.strip() else model()


class FastJSONResponse(JSONResponse):
    """JSON encoded by msgspec: a reply of megabytes (a draft file echoed) is encoded on
    the event loop, so its cost must stay small (~10x below the json module's)."""

    def render(self, content: JsonValue) -> bytes:
        return msgspec.json.encode(content)


def reply(body: BaseModel | JsonValue, status: int = 200) -> JSONResponse:
    content = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
    return FastJSONResponse(content, status_code=status)


def _check_request_path(request: Request) -> None:
    """Refuse a path whose escapes are not UTF-8 or that hides characters.

    The server decodes invalid UTF-8 to U+FFFD, which would be written as is;
    and a route's pattern stops before a trailing newline (``books%0A`` would
    name ``books``), so the whole path is checked, not only its parameters.
    """
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes):
        try:
            unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError("invalid_path", "the request path is not valid UTF-8") from None
    path: str = request.scope.get("path", "")
    if HIDDEN.search(path):
        raise ApiError(
            "invalid_path",
            f"the request path {path[:200]!r} contains a control or invisible character",
        )


def workspace_param(request: Request) -> str:
    """``{ws}``: a name no workspace can have is simply not found."""
    _check_request_path(request)
    value: str = request.path_params["ws"]
    if not _WORKSPACE.fullmatch(value):
        raise NotFound(f"workspace {value[:100]!r} does not exist")
    return value


def user_param(request: Request) -> str:
    """``{user}``, under a ``{ws}`` whose ``workspace_param`` checked the whole path."""
    value: str = request.path_params["user"]
    if not _USER.fullmatch(value):
        raise ApiError("invalid_request", f"user {value[:100]!r} is not a valid user name")
    return value


def draft_params(request: Request) -> tuple[str, str]:
    """``{ws}`` and ``{user}`` of a draft's path."""
    return workspace_param(request), user_param(request)


def path_param(request: Request, name: str) -> str:
    """A path parameter the route's converter has already shaped (a folder, a file path).

    The whole path was checked by ``workspace_param`` where it holds one; an id
    (a pipeline's, a pull's) that no record can have is simply not found.
    """
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
    if user is not None and not _USER.fullmatch(user):
        raise ApiError("invalid_request", f"draft user {user[:100]!r} is not a valid user name")
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
