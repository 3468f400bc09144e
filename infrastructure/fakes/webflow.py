"""A local fake of Webflow's Data API v2 (CMS items), faithful to CONNECTORS.md's facts.

The sandbox is publishd's demo service and forgives what Webflow does not; a
connector proven only against it would meet Webflow's rules for the first time
in production. This fake keeps those rules, so the Webflow adapter's tests and
benchmarks run against them:

- ``Authorization: Bearer <token>`` or 401 ``not_authorized``; the rate limit is
  a sliding window **per token** (60 requests per 60 s unless configured), every
  answer carries ``X-RateLimit-Limit`` / ``X-RateLimit-Remaining``, an excess
  request is a 429 ``too_many_requests`` with ``Retry-After`` and does not count;
- ids are 24 hex characters; ``name`` and ``slug`` are required on create, a
  slug is unique in its collection (a duplicate is a 400 ``validation_error``
  on ``slug``); unknown fields, bad references and more than 100 items refuse
  the **whole** request with a 400 whose ``details[].param`` names the field
  but not the item (as Webflow's does not);
- deleting an item that a staged item still references is a 409 ``conflict``
  with ``details[0].conflicts`` (the shape third-party tools report), deleting
  nothing; referrers deleted in the same request do not count;
- staged writes change the CMS only; ``/items/live`` writes and
  ``items/publish`` also change the live copy, which ``GET .../items/live``
  lists. A staged delete leaves the live copy up, as on Webflow.

Seed (or ``PUT /_admin/collections/{id}``) a collection as
``{"id"?, "displayName", "slug", "fields": [{"slug", "type", "validations"?}],
"items": [{"id"?, "fieldData", "isDraft"?, "isArchived"?}]}``; ``name`` and
``slug`` fields are added when missing. ``PUT /_admin/faults`` takes the fields
of ``WebflowFaults`` (``{}``: the defaults); ``GET /_admin/stats`` counts
requests, ``rate_limited``, ``lost_responses``, ``duplicates`` (created items
refused because their slug already existed: a client that sent a create
twice), ``creates``, ``updates``, ``deletes``, ``published``.
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from domain.json_types import JsonObject, JsonValue
from infrastructure.sandbox.faults import SlidingWindow

MAX_ITEMS = 100
"""Most items per create, update, delete, publish request and list page."""
SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
REFERENCE_TYPES = frozenset({"Reference", "MultiReference"})
ID = re.compile(r"^[0-9a-f]{24}$")


class WebflowError(Exception):
    """A refused request, rendered as Webflow renders errors."""

    def __init__(self, status: int, code: str, message: str, details: list[JsonValue]) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details

    def response(self, headers: Mapping[str, str] | None = None) -> Response:
        body = {
            "code": self.code,
            "message": self.message,
            "externalReference": None,
            "details": self.details,
        }
        return JSONResponse(body, status_code=self.status, headers=dict(headers or {}))


def _invalid(param: str, description: str) -> WebflowError:
    details: list[JsonValue] = [{"param": param, "description": description}]
    return WebflowError(400, "validation_error", "Validation Error", details)


def _not_found(what: str) -> WebflowError:
    return WebflowError(404, "resource_not_found", f"Requested resource not found: {what}", [])


@dataclass(frozen=True)
class _Field:
    id: str
    slug: str
    type: str
    required: bool = False
    target: str | None = None
    """Reference / MultiReference: the collection the value points into."""

    def to_json(self) -> JsonObject:
        validations = {"collectionId": self.target} if self.target else None
        return {
            "id": self.id,
            "slug": self.slug,
            "displayName": self.slug,
            "type": self.type,
            "isRequired": self.required,
            "isEditable": True,
            "validations": validations,
        }


@dataclass
class _Item:
    id: str
    field_data: JsonObject
    created_on: str
    last_updated: str
    last_published: str | None = None
    is_draft: bool = False
    is_archived: bool = False

    def to_json(self) -> JsonObject:
        return {
            "id": self.id,
            "cmsLocaleId": None,
            "lastPublished": self.last_published,
            "lastUpdated": self.last_updated,
            "createdOn": self.created_on,
            "isArchived": self.is_archived,
            "isDraft": self.is_draft,
            "fieldData": json.loads(json.dumps(self.field_data)),
        }


@dataclass
class _Collection:
    id: str
    display_name: str
    slug: str
    fields: dict[str, _Field]
    items: dict[str, _Item] = field(default_factory=dict)
    live: dict[str, JsonObject] = field(default_factory=dict)
    """The live site: item id -> the item as last published."""

    def to_json(self) -> JsonObject:
        return {
            "id": self.id,
            "displayName": self.display_name,
            "singularName": self.display_name,
            "slug": self.slug,
            "fields": [f.to_json() for f in self.fields.values()],
        }

    def by_slug(self, slug: str) -> _Item | None:
        return next((i for i in self.items.values() if i.field_data.get("slug") == slug), None)


class WebflowStore:
    """Collections and items under one lock; every write checks all its items, then applies."""

    def __init__(self, clock: Callable[[], datetime], stats: Counter[str]) -> None:
        self._clock = clock
        self._stats = stats
        self._lock = threading.Lock()
        self._ids = 0
        self.collections: dict[str, _Collection] = {}

    def new_id(self) -> str:
        self._ids += 1
        return f"{0x64F0 << 80 | self._ids:024x}"

    def _now(self) -> str:
        return self._clock().astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"

    def collection(self, collection_id: str) -> _Collection:
        found = self.collections.get(collection_id)
        if found is None:
            raise _not_found(f"collection {collection_id}")
        return found

    def define(self, schema: JsonObject) -> _Collection:
        """Create or redefine a collection (its items stay), then load its seeded items."""
        with self._lock:
            cid = str(schema.get("id") or self.new_id())
            raw_fields = schema.get("fields") or []
            if not ID.match(cid) or not isinstance(raw_fields, list):
                raise _invalid("id", "a collection needs a 24-hex id and a list of fields")
            fields_ = {"name": _Field(self.new_id(), "name", "PlainText", True)}
            fields_["slug"] = _Field(self.new_id(), "slug", "PlainText", True)
            for raw in raw_fields:
                target = (raw.get("validations") or {}).get("collectionId")
                fields_[raw["slug"]] = _Field(
                    str(raw.get("id") or self.new_id()),
                    raw["slug"],
                    raw.get("type", "PlainText"),
                    bool(raw.get("isRequired", raw["slug"] in ("name", "slug"))),
                    target if raw.get("type") in REFERENCE_TYPES else None,
                )
            old = self.collections.get(cid)
            name = str(schema.get("displayName") or cid)
            c = _Collection(cid, name, str(schema.get("slug") or name.lower()), fields_)
            if old is not None:
                c.items, c.live = old.items, old.live
            self.collections[cid] = c
        creates = self._stats["creates"]
        for item in schema.get("items") or []:
            self.create(cid, [item], live=False, item_ids=[item.get("id")])
        self._stats["creates"] = creates  # seeding is not a client's create
        return c

    # -- writes ------------------------------------------------------------------------

    def create(
        self,
        cid: str,
        entries: JsonValue,
        *,
        live: bool,
        item_ids: list[str | None] | None = None,
    ) -> list[JsonObject]:
        with self._lock:
            c = self.collection(cid)
            _count(entries)
            slugs: set[str] = set()
            for entry in entries:
                data = _field_data(entry)
                self._check_fields(c, data, creating=True)
                slug = data["slug"]
                if c.by_slug(slug) is not None or slug in slugs:
                    self._stats["duplicates"] += c.by_slug(slug) is not None
                    raise _invalid("slug", f"Unique value is already in database: '{slug}'")
                slugs.add(slug)
            now, created = self._now(), []
            for n, entry in enumerate(entries):
                item_id = (item_ids[n] if item_ids else None) or self.new_id()
                item = _Item(item_id, dict(_field_data(entry)), now, now)
                _set_flags(item, entry)
                c.items[item.id] = item
                if live:
                    self._publish(c, item, now)
                created.append(item.to_json())
            self._stats["creates"] += len(created)
            return created

    def update(self, cid: str, entries: JsonValue, *, live: bool) -> list[JsonObject]:
        with self._lock:
            c = self.collection(cid)
            _count(entries)
            for entry in entries:
                item = c.items.get(str(entry.get("id")))
                if item is None:
                    raise _not_found(f"item {entry.get('id')}")
                data = _field_data(entry)
                self._check_fields(c, data, creating=False)
                other = c.by_slug(data["slug"]) if "slug" in data else None
                if other is not None and other is not item:
                    raise _invalid("slug", f"Unique value is already in database: '{data['slug']}'")
            now, updated = self._now(), []
            for entry in entries:
                item = c.items[str(entry["id"])]
                item.field_data.update(_field_data(entry))
                _set_flags(item, entry)
                item.last_updated = now
                if live:
                    self._publish(c, item, now)
                updated.append(item.to_json())
            self._stats["updates"] += len(updated)
            return updated

    def delete(self, cid: str, entries: JsonValue, *, live: bool) -> None:
        """Staged: out of the CMS (the live copy stays). Live: off the live site."""
        with self._lock:
            c = self.collection(cid)
            _count(entries)
            ids = [str(entry.get("id")) for entry in entries]
            place = c.live if live else c.items
            missing = [i for i in ids if i not in place and (not live or i not in c.items)]
            if missing:
                raise _not_found(f"items {', '.join(missing)}")
            conflicts = self._conflicts(c, set(ids))
            if conflicts:
                details: list[JsonValue] = [{"param": "items", "conflicts": conflicts}]
                message = f"{len(conflicts)} item(s) are still referenced"
                raise WebflowError(409, "conflict", message, details)
            for item_id in ids:
                c.live.pop(item_id, None)
                if not live:
                    del c.items[item_id]
            self._stats["live_deletes" if live else "deletes"] += len(ids)

    def publish(self, cid: str, item_ids: JsonValue) -> JsonObject:
        with self._lock:
            c = self.collection(cid)
            if not isinstance(item_ids, list) or not 1 <= len(item_ids) <= MAX_ITEMS:
                raise _invalid("itemIds", f"must be a list of 1 to {MAX_ITEMS} item ids")
            now, published, errors = self._now(), [], []
            for item_id in item_ids:
                item = c.items.get(str(item_id))
                if item is None:
                    errors.append(f"item {item_id} not found")
                    continue
                self._publish(c, item, now)
                published.append(item.id)
            self._stats["published"] += len(published)
            return {"publishedItemIds": published, "errors": errors}

    def _publish(self, c: _Collection, item: _Item, now: str) -> None:
        item.last_published = now
        c.live[item.id] = item.to_json()

    # -- reads -------------------------------------------------------------------------

    def page(
        self, cid: str, offset: int, limit: int, *, slug: str | None, live: bool
    ) -> JsonObject:
        with self._lock:
            c = self.collection(cid)
            every = list(c.live.values()) if live else [i.to_json() for i in c.items.values()]
            if slug is not None:
                every = [i for i in every if i["fieldData"].get("slug") == slug]
            page = every[offset : offset + limit]
            return {
                "items": page,
                "pagination": {"limit": limit, "offset": offset, "total": len(every)},
            }

    def get(self, cid: str, item_id: str, *, live: bool) -> JsonObject:
        with self._lock:
            c = self.collection(cid)
            item = c.items.get(item_id)
            found: JsonObject | None = (
                c.live.get(item_id) if live else item.to_json() if item else None
            )
            if found is None:
                raise _not_found(f"item {item_id}")
            return found

    # -- rules -------------------------------------------------------------------------

    def _check_fields(self, c: _Collection, data: JsonObject, *, creating: bool) -> None:
        for slug, value in data.items():
            spec = c.fields.get(slug)
            if spec is None:
                raise _invalid(slug, f"Field not described in schema: '{slug}'")
            if spec.target is not None:
                self._check_reference(spec, value)
        if creating:
            for spec in c.fields.values():
                if spec.required and data.get(spec.slug) in (None, ""):
                    raise _invalid(spec.slug, f"Field '{spec.slug}': Field is required")
        value = data.get("slug")
        if "slug" in data and not (isinstance(value, str) and SLUG.match(value)):
            raise _invalid("slug", "Field 'slug': a slug is lowercase letters, digits and '-'")

    def _check_reference(self, spec: _Field, value: JsonValue) -> None:
        target = self.collections.get(spec.target or "")
        if spec.type == "MultiReference":
            if value is None:
                return
            if not isinstance(value, list):
                raise _invalid(spec.slug, f"Field '{spec.slug}': expected a list of item ids")
            ids = value
        else:
            if value in (None, ""):
                return
            ids = [value]
        for item_id in ids:
            if target is None or not isinstance(item_id, str) or item_id not in target.items:
                raise _invalid(spec.slug, f"Field '{spec.slug}': referenced item not found")

    def _conflicts(self, c: _Collection, doomed: set[str]) -> list[JsonValue]:
        """Each doomed item that a surviving staged item still points at, with who does."""
        found: dict[str, list[JsonValue]] = {}
        for other in self.collections.values():
            refs = [f for f in other.fields.values() if f.target == c.id]
            for item in other.items.values():
                if other is c and item.id in doomed:
                    continue
                for spec in refs:
                    value = item.field_data.get(spec.slug)
                    for target in value if isinstance(value, list) else [value]:
                        if target in doomed:
                            referrer = {"collectionId": other.id, "itemId": item.id}
                            found.setdefault(target, []).append({**referrer, "field": spec.slug})
        return [{"itemId": i, "referencedBy": by} for i, by in found.items()]


def _count(entries: JsonValue) -> None:
    if not isinstance(entries, list) or not entries:
        raise _invalid("items", "'items' must be a non-empty list")
    if len(entries) > MAX_ITEMS:
        raise _invalid("items", f"'items' must contain at most {MAX_ITEMS} items")
    if not all(isinstance(entry, dict) for entry in entries):
        raise _invalid("items", "each item must be an object")


def _field_data(entry: JsonObject) -> JsonObject:
    data = entry.get("fieldData", {})
    if not isinstance(data, dict):
        raise _invalid("fieldData", "'fieldData' must be an object")
    return data


def _set_flags(item: _Item, entry: JsonObject) -> None:
    for key, attr in (("isDraft", "is_draft"), ("isArchived", "is_archived")):
        if isinstance(entry.get(key), bool):
            setattr(item, attr, entry[key])


@dataclass(frozen=True)
class WebflowFaults:
    """How the fake limits and misbehaves; ``PUT /_admin/faults`` replaces it whole."""

    rate_limit: float | None = 60
    """Requests per ``rate_window_s`` per token (Webflow's Starter/Basic: 60/min); None: off."""
    rate_window_s: float = 60.0
    retry_after_s: int | None = None
    """``Retry-After`` on a 429; None: the whole seconds until the window has room (<= 60)."""
    refuse_next: int = 0
    """A 429 storm: the next N requests are refused (``Retry-After``: ``retry_after_s``, or 1)."""
    fail_next: int = 0
    """The next N requests are a 500, nothing applied."""
    lose_next_writes: int = 0
    """The next N successful writes are applied, then answered 502 (a lost response)."""
    lost_response_rate: float = 0.0
    outage: bool = False
    """Every request is a 503 until turned off."""
    seed: int | None = None

    @classmethod
    def from_json(cls, raw: Any) -> WebflowFaults:
        if not isinstance(raw, dict) or set(raw) - {f.name for f in fields(cls)}:
            raise ValueError(f"faults take only: {', '.join(f.name for f in fields(cls))}")
        try:
            return cls(**raw)
        except TypeError as exc:
            raise ValueError(str(exc)) from exc


class _Gate:
    """Per request, before it is handled: auth, outage, storms, the rate window, failures."""

    def __init__(self, token: str, stats: Counter[str], clock: Callable[[], float]) -> None:
        self._token = token
        self._stats = stats
        self._clock = clock
        self.configure(WebflowFaults())

    def configure(self, faults: WebflowFaults) -> None:
        self.faults = faults
        self._windows: dict[str, SlidingWindow] = {}
        self._refuse, self._fail, self._lose = (
            faults.refuse_next,
            faults.fail_next,
            faults.lose_next_writes,
        )
        self._rng = random.Random(faults.seed)

    def admit(self, authorization: str | None) -> tuple[WebflowError | None, dict[str, str]]:
        if authorization != f"Bearer {self._token}":
            self._stats["unauthorized"] += 1
            return WebflowError(401, "not_authorized", "Request not authorized", []), {}
        if self.faults.outage:
            return WebflowError(503, "service_unavailable", "Service unavailable", []), {}
        window = self._window(authorization)
        if self._refuse > 0 or (window is not None and window.wait() > 0):
            wait = 1.0 if self._refuse > 0 or window is None else window.wait()
            self._refuse = max(0, self._refuse - 1)
            self._stats["rate_limited"] += 1
            after = self.faults.retry_after_s
            after = math.ceil(wait) if after is None else after
            headers = {**self._headers(window), "Retry-After": str(after)}
            message = "Too many requests, please retry later"
            return WebflowError(429, "too_many_requests", message, []), headers
        if window is not None:
            window.admit()
        if self._fail > 0:
            self._fail -= 1
            self._stats["failed"] += 1
            return WebflowError(500, "internal_error", "injected failure", []), {}
        return None, self._headers(window)

    def lose(self) -> bool:
        """After a write applied: whether its answer is lost."""
        rate = self.faults.lost_response_rate
        if self._lose > 0 or (rate > 0 and self._rng.random() < rate):
            self._lose = max(0, self._lose - 1)
            self._stats["lost_responses"] += 1
            return True
        return False

    def _window(self, authorization: str) -> SlidingWindow | None:
        if self.faults.rate_limit is None:
            return None
        window = self._windows.get(authorization)
        if window is None:
            limit, span = self.faults.rate_limit, self.faults.rate_window_s
            window = self._windows[authorization] = SlidingWindow(limit, span, self._clock)
        return window

    @staticmethod
    def _headers(window: SlidingWindow | None) -> dict[str, str]:
        if window is None:
            return {}
        limit, remaining = str(window.limit), str(window.remaining())
        return {"X-RateLimit-Limit": limit, "X-RateLimit-Remaining": remaining}


Handler = Callable[[Request, JsonValue], JsonValue]
"""Answers a JSON body (status 200), a ``(status, body)`` pair, or raises ``WebflowError``."""


def create_app(
    seed: Iterable[JsonObject] = (),
    *,
    token: str = "webflow-test-token",
    site_id: str = "64f000000000000000000001",
    faults: WebflowFaults | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    fault_clock: Callable[[], float] = time.monotonic,
) -> Starlette:
    """A fresh fake under ``/v2``: ``seed`` collections, one accepted ``token``."""
    stats: Counter[str] = Counter()
    store = WebflowStore(clock, stats)
    for schema in seed:
        store.define(schema)
    gate = _Gate(token, stats, fault_clock)
    gate.configure(faults or WebflowFaults())

    def public(handler: Handler, *, write: bool = False) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            stats["requests"] += 1
            stats[f"requests_{request.method}"] += 1
            refusal, headers = gate.admit(request.headers.get("authorization"))
            if refusal is not None:
                return refusal.response(headers)
            try:
                body = await _body(request) if write else None
                answer = handler(request, body)
            except WebflowError as exc:
                return exc.response(headers)
            if write and gate.lose():
                lost = WebflowError(502, "bad_gateway", "Bad gateway", [])
                return lost.response(headers)
            status, payload = answer if isinstance(answer, tuple) else (200, answer)
            if status == 204:
                return Response(status_code=204, headers=headers)
            return JSONResponse(payload, status_code=status, headers=headers)

        return endpoint

    def cid(request: Request) -> str:
        return str(request.path_params["collection_id"])

    def live(request: Request) -> bool:
        return request.url.path.endswith("/live")

    def list_items(request: Request, body: JsonValue) -> JsonValue:
        offset = _int(request, "offset", 0, 2**31)
        limit = _int(request, "limit", 1, MAX_ITEMS, default=MAX_ITEMS)
        slug = request.query_params.get("slug")
        return store.page(cid(request), offset, limit, slug=slug, live=live(request))

    def create_items(request: Request, body: JsonValue) -> JsonValue:
        entries = body.get("items") if isinstance(body, dict) and "items" in body else [body]
        return 202, {"items": store.create(cid(request), entries, live=live(request))}

    def update_items(request: Request, body: JsonValue) -> JsonValue:
        entries = body.get("items") if isinstance(body, dict) else None
        return {"items": store.update(cid(request), entries, live=live(request))}

    def delete_items(request: Request, body: JsonValue) -> JsonValue:
        entries = body.get("items") if isinstance(body, dict) else None
        store.delete(cid(request), entries, live=live(request))
        return 204, None

    def publish(request: Request, body: JsonValue) -> JsonValue:
        item_ids = body.get("itemIds") if isinstance(body, dict) else None
        return 202, store.publish(cid(request), item_ids)

    def get_item(request: Request, body: JsonValue) -> JsonValue:
        item_id = str(request.path_params["item_id"])
        return store.get(cid(request), item_id, live=live(request))

    def get_collection(request: Request, body: JsonValue) -> JsonValue:
        return store.collection(cid(request)).to_json()

    def list_collections(request: Request, body: JsonValue) -> JsonValue:
        if request.path_params["site_id"] != site_id:
            raise _not_found(f"site {request.path_params['site_id']}")
        return {"collections": [c.to_json() for c in store.collections.values()]}

    async def admin_faults(request: Request) -> Response:
        if request.method == "PUT":
            try:
                gate.configure(WebflowFaults.from_json(json.loads(await request.body())))
            except ValueError as exc:
                return JSONResponse({"message": str(exc)}, status_code=400)
        return JSONResponse(asdict(gate.faults))

    async def admin_stats(request: Request) -> Response:
        if request.method == "DELETE":
            stats.clear()
        return JSONResponse(dict(stats))

    async def admin_collection(request: Request) -> Response:
        schema = {**json.loads(await request.body()), "id": cid(request)}
        try:
            return JSONResponse(store.define(schema).to_json())
        except WebflowError as exc:
            return exc.response()

    def methods(**handlers: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def dispatch(request: Request) -> Response:
            return await handlers[request.method](request)  # type: ignore[no-any-return]

        return dispatch

    items = methods(
        GET=public(list_items),
        POST=public(create_items, write=True),
        PATCH=public(update_items, write=True),
        DELETE=public(delete_items, write=True),
    )
    verbs = ["GET", "POST", "PATCH", "DELETE"]
    base = "/v2/collections/{collection_id}"
    routes = [
        Route("/_admin/faults", admin_faults, methods=["GET", "PUT"]),
        Route("/_admin/stats", admin_stats, methods=["GET", "DELETE"]),
        Route("/_admin/collections/{collection_id}", admin_collection, methods=["PUT"]),
        Route("/v2/sites/{site_id}/collections", public(list_collections), methods=["GET"]),
        Route(base, public(get_collection), methods=["GET"]),
        Route(f"{base}/items", items, methods=verbs),
        Route(f"{base}/items/live", items, methods=verbs),
        Route(f"{base}/items/publish", public(publish, write=True), methods=["POST"]),
        Route(f"{base}/items/{{item_id}}", public(get_item), methods=["GET"]),
        Route(f"{base}/items/{{item_id}}/live", public(get_item), methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    app.state.store = store
    return app


async def _body(request: Request) -> JsonValue:
    try:
        return json.loads(await request.body() or b"null")
    except ValueError:
        raise _invalid("body", "the body is not valid JSON") from None


def _int(request: Request, name: str, low: int, high: int, *, default: int = 0) -> int:
    raw = request.query_params.get(name)
    try:
        value = default if raw is None else int(raw)
    except ValueError:
        raise _invalid(name, f"'{name}' must be an integer") from None
    if not low <= value <= high:
        raise _invalid(name, f"'{name}' must be between {low} and {high}")
    return value
