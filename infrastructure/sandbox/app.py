"""The sandbox CMS as a Starlette app (API.md section 10), plus admin endpoints for tests.

Every public endpoint goes through ``_SandboxEndpoint.handle``: faults first, then the
idempotency cache, then the store. The body is read before the cache lookup so
that lookup, write and cache fill run with no ``await`` in between: two
concurrent requests with one key can't both apply.

``POST`` and ``PATCH`` on ``/collections/{c}/items`` with ``{"items": [...]}`` are
the bulk writes of a real CMS (Webflow takes 100 items a request): a connector
that batches is measured against a service that batches. They pass through the
same wrapper as single writes, so a bulk request is one request to the rate
limit, one ``Idempotency-Key`` (its whole answer replays) and one lost response.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from domain.json_types import JsonObject, JsonValue
from infrastructure.sandbox import bulk
from infrastructure.sandbox.faults import Fault, FaultConfig, FaultInjector
from infrastructure.sandbox.idempotency import IdempotencyCache, StoredResponse
from infrastructure.sandbox.rules import (
    MAX_PAGE,
    StoreError,
    ValidationError,
    parse_reference_fields,
)
from infrastructure.sandbox.store import SandboxStore, utc_now

Handler = Callable[[Request, JsonValue], Response]
"""Synchronous on purpose: see the module docstring."""
Endpoint = Callable[[Request], Awaitable[Response]]

_WRITES = frozenset({"POST", "PATCH", "DELETE", "PUT"})


def _json(status: int, body: JsonValue, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, headers=headers)


def _fault_response(fault: Fault) -> Response:
    body = {"code": fault.code, "message": fault.message}
    return _json(fault.status, body, dict(fault.headers) if fault.headers else None)


def _replay(stored: StoredResponse) -> Response:
    if stored.status == 204:
        return Response(status_code=204)
    return Response(stored.body, status_code=stored.status, media_type="application/json")


class _SandboxEndpoint:
    """Wraps a handler with fault injection and ``Idempotency-Key`` replay."""

    def __init__(self, handler: Handler, faults: FaultInjector, cache: IdempotencyCache) -> None:
        self._handler = handler
        self._faults = faults
        self._cache = cache

    async def handle(self, request: Request) -> Response:
        faults, method = self._faults, request.method
        faults.stats["requests"] += 1
        faults.stats[f"requests_{method}"] += 1
        if faults.latency_s:
            await asyncio.sleep(faults.latency_s)
        admission = faults.before(request.headers.get("authorization"))
        if admission.fault is not None:
            return _with_headers(_fault_response(admission.fault), admission.headers)
        return _with_headers(await self._admitted(request), admission.headers)

    async def _admitted(self, request: Request) -> Response:
        method = request.method
        try:
            body = await _read_json(request) if method in _WRITES else None
        except StoreError as exc:
            return _json(exc.status, exc.body)
        response = self._respond(request, body)
        if method in _WRITES and 200 <= response.status_code < 300:
            lost = self._faults.lose_response()
            if lost is not None:
                return _fault_response(lost)
        return response

    def _respond(self, request: Request, body: JsonValue) -> Response:
        key = request.headers.get("idempotency-key")
        method, path = request.method, request.url.path
        if key and method in _WRITES:
            stored = self._cache.get(method, path, key)
            if stored is not None:
                self._faults.stats["duplicates"] += 1
                return _replay(stored)
        try:
            response = self._handler(request, body)
        except StoreError as exc:
            return _json(exc.status, exc.body)
        if key and method in _WRITES and 200 <= response.status_code < 300:
            self._cache.put(
                method, path, key, StoredResponse(response.status_code, bytes(response.body))
            )
        return response


def _with_headers(response: Response, headers: Mapping[str, str]) -> Response:
    response.headers.update(headers)
    return response


async def _read_json(request: Request) -> JsonValue:
    raw = await request.body()
    if not raw:
        raise ValidationError("a JSON body is required")
    try:
        return json.loads(raw, parse_constant=_not_json)
    except ValueError as exc:
        raise ValidationError(f"malformed JSON: {exc}") from exc


def _not_json(name: str) -> JsonValue:
    # Python's json module reads NaN and Infinity, which JSON has not: stored, they
    # would make every later answer holding them unencodable (a 500 each time).
    raise ValueError(f"{name} is not JSON")


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise ValidationError(f"{name} must be between {low} and {high}")
    return value


def _object(body: JsonValue) -> JsonObject:
    if not isinstance(body, dict):
        raise ValidationError("the body must be a JSON object")
    return body


def create_app(
    seed: JsonObject | None = None,
    faults: FaultConfig | None = None,
    *,
    clock: Callable[[], datetime] = utc_now,
    fault_clock: Callable[[], float] = time.monotonic,
) -> Starlette:
    """A fresh sandbox: its own store, loaded from ``seed``, misbehaving as ``faults`` says.

    ``clock`` stamps ``createdOn``/``lastUpdated``; a test stops it to show that
    writes in one clock tick still get distinct versions. ``fault_clock`` times
    the rate limit's window; a test moves it by hand instead of sleeping.
    """
    store = SandboxStore(clock=clock)
    if seed is not None:
        store.load_seed(seed)
    injector = FaultInjector(faults or FaultConfig(), clock=fault_clock)
    cache = IdempotencyCache()
    stats = injector.stats

    def list_collections(request: Request, body: JsonValue) -> Response:
        return _json(200, {"collections": store.collection_totals()})

    def put_collection(request: Request, body: JsonValue) -> Response:
        name = request.path_params["collection"]
        fields = parse_reference_fields(_object(body).get("referenceFields"))
        store.define(name, fields)
        return _json(200, {"name": name, "referenceFields": _fields_json(fields)})

    def list_items(request: Request, body: JsonValue) -> Response:
        offset = _int_param(request, "offset", 0, 0, 2**31)
        limit = _int_param(request, "limit", MAX_PAGE, 1, MAX_PAGE)
        collection = request.path_params["collection"]
        items, total = store.list_items(collection, offset, limit)
        response = _json(200, {"items": items, "total": total})
        if request.method == "GET" and injector.deletes_after_page(collection, offset + len(items)):
            listed = [str(item["id"]) for item in reversed(items)]
            if store.delete_one_unreferenced(collection, listed) is not None:
                injector.deleted_after_page()
        return response

    def get_item(request: Request, body: JsonValue) -> Response:
        params = request.path_params
        return _json(200, store.get(params["collection"], params["item_id"]))

    def create_item(request: Request, body: JsonValue) -> Response:
        collection, fields = request.path_params["collection"], _object(body)
        if bulk.is_bulk(fields):
            items = store.create_many(collection, bulk.creates(fields))
            stats["creates"] += len(items)
            stats["bulk_creates"] += 1
            return _json(201, {"items": items})
        item = store.create(collection, fields.get("fieldData"))
        stats["creates"] += 1
        return _json(201, item)

    def update_item(request: Request, body: JsonValue) -> Response:
        params = request.path_params
        fields = _object(body).get("fieldData")
        if_match = request.headers.get("if-match")
        item = store.update(params["collection"], params["item_id"], fields, if_match=if_match)
        stats["updates"] += 1
        return _json(200, item)

    def update_items(request: Request, body: JsonValue) -> Response:
        changes = bulk.changes(_object(body))
        items = store.update_many(request.path_params["collection"], changes)
        stats["updates"] += len(items)
        stats["bulk_updates"] += 1
        return _json(200, {"items": items})

    def delete_items(request: Request, body: JsonValue) -> Response:
        stats["deletes"] += store.delete_many(
            request.path_params["collection"], _object(body).get("items")
        )
        return Response(status_code=204)

    def public(handler: Handler) -> Endpoint:
        return _SandboxEndpoint(handler, injector, cache).handle

    async def get_stats(request: Request) -> Response:
        return _json(200, {**stats, "faults": injector.config.to_json()})

    async def reset_stats(request: Request) -> Response:
        stats.clear()
        return Response(status_code=204)

    async def get_faults(request: Request) -> Response:
        return _json(200, injector.config.to_json())

    async def put_faults(request: Request) -> Response:
        try:
            injector.configure(FaultConfig.from_json(await _read_json(request)))
        except (ValueError, StoreError) as exc:
            return _json(400, {"code": "validation_error", "message": str(exc)})
        return _json(200, injector.config.to_json())

    async def healthz(request: Request) -> Response:
        return _json(200, {"status": "ok"})

    listing = public(list_items)
    items_endpoints = {
        "GET": listing,
        "HEAD": listing,
        "POST": public(create_item),
        "PATCH": public(update_items),
        "DELETE": public(delete_items),
    }
    reading = public(get_item)
    item_endpoints = {"GET": reading, "HEAD": reading, "PATCH": public(update_item)}

    async def items_endpoint(request: Request) -> Response:
        return await items_endpoints[request.method](request)

    async def item_endpoint(request: Request) -> Response:
        return await item_endpoints[request.method](request)

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/_admin/stats", get_stats, methods=["GET"]),
        Route("/_admin/stats", reset_stats, methods=["DELETE"]),
        Route("/_admin/faults", get_faults, methods=["GET"]),
        Route("/_admin/faults", put_faults, methods=["PUT"]),
        Route("/collections", public(list_collections), methods=["GET"]),
        Route(
            "/collections/{collection:path}/items/{item_id}",
            item_endpoint,
            methods=["GET", "PATCH"],
        ),
        Route(
            "/collections/{collection:path}/items",
            items_endpoint,
            methods=["GET", "POST", "PATCH", "DELETE"],
        ),
        Route("/collections/{collection:path}", public(put_collection), methods=["PUT"]),
    ]
    app = Starlette(routes=routes)
    app.state.store = store
    app.state.faults = injector
    return app


def _fields_json(fields: JsonObject) -> JsonObject:
    return {n: {"target": f.target, "multiple": f.multiple} for n, f in fields.items()}
