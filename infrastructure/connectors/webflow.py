"""The Webflow connector: publishd's ``Connector`` over Webflow's Data API v2 (CMS items).

A publishd folder is a Webflow collection (the config's ``collections`` map);
a record is an item, ``field_data`` its ``fieldData`` and ``computed`` the
fields Webflow keeps itself (``createdOn``, ``lastUpdated``, ``lastPublished``,
``isDraft``, ``isArchived``, ``cmsLocaleId``). ``isDraft`` / ``isArchived`` sit
in ``computed`` so that no schema field is needed for them; a write whose
fields hold either sends it as the item's top-level flag.

How this adapter differs from the sandbox's, because Webflow differs:

- **No idempotency keys.** A create whose answer was lost may have been
  applied, and sending it again would be refused as a duplicate slug (or, on
  a service that suffixed slugs, create a second item). So a create is never
  re-sent blindly: after an answer that may follow an applied write (a 5xx, a
  timeout) the adapter looks the items up by slug (``find_created``) and sends
  only the ones not found. A 429 or a refused connection is re-sent as is:
  nothing was applied. A resumed run asks ``find_created`` the same question.
- **One bad item refuses the whole request**, and Webflow names the field
  (``details[].param``), not the item: ``EntryRejected`` then carries no
  ``index`` (but index 0 for a batch of one), and the run engine halves the
  batch to find it.
- **Live or staged.** With ``live: true`` writes go to ``/items/live``; a
  delete does the live call (off the site) and then the staged one (out of
  the CMS), as CONNECTORS.md advises where the sources disagree. Otherwise
  writes are staged and ``finish_run`` publishes what the pipeline changed.
- **Rate.** 60 requests a minute unless ``requests_per_minute`` says more;
  every attempt is paced by the shared ``RateLimiter``, a 429 pauses it for
  ``Retry-After`` (about 60 s on Webflow) and ``X-RateLimit-Remaining`` tells
  it what other clients of the same token spent.

The token goes in the ``Authorization`` header and nowhere else: not in a
message (answers are scrubbed of it in case a service echoes it), nor ``repr``.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from urllib.parse import quote

from application.connector import (
    CollectionDescription,
    Connector,
    ConnectorError,
    EntryRejected,
    FatalConnectorError,
    FieldDescription,
    ItemOutcome,
    Record,
    RecordPage,
    RecordUpdate,
    TransientFailure,
)
from domain.connector_config import BATCH_LIMITS
from domain.json_types import JsonObject, JsonValue
from infrastructure.connectors.http_client import (
    HttpClient,
    InvalidAddress,
    Response,
)
from infrastructure.connectors.rate_limit import RateLimiter, Sleep
from infrastructure.connectors.retrying import MaybeApplied, Retrying, details_of, json_of

DEFAULT_BASE_URL = "https://api.webflow.com/v2"
DEFAULT_REQUESTS_PER_MINUTE = 60.0
PAGE = 100
"""Most items per list page and per publish request."""
COMPUTED = ("createdOn", "lastUpdated", "lastPublished", "isDraft", "isArchived", "cmsLocaleId")
FLAGS = ("isDraft", "isArchived")
"""Top-level item flags a write may set."""
_ITEM_PARAM = re.compile(r"^items\[(\d+)\]")


class WebflowConnector(Connector):
    batch_limits = BATCH_LIMITS["webflow"]
    list_page_size = PAGE
    version_field = None
    creates_idempotently = False

    def __init__(
        self,
        config: Mapping[str, JsonValue],
        token: str,
        *,
        rate_limiter: RateLimiter | None,
        concurrency: int = 8,
        max_retries: int = 5,
        backoff_base: float = 0.1,
        backoff_max: float = 10.0,
        retry_after_max: float = 120.0,
        timeout: float = 10.0,
        sleep: Sleep = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._base_url = str(config.get("base_url") or DEFAULT_BASE_URL)
        collections = config.get("collections") or {}
        self._collections = {str(k).strip("/"): str(v) for k, v in dict(collections).items()}
        self._live = config.get("live") is True
        self._token = token
        self._max_retries = max_retries
        self._sleep = sleep
        rate = config.get("requests_per_minute") or DEFAULT_REQUESTS_PER_MINUTE
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        http: HttpClient | None = None
        unusable: str | None = None
        try:
            http = HttpClient(self._base_url, size=concurrency, timeout=timeout, headers=headers)
        except InvalidAddress as exc:
            unusable = f"the Webflow connector cannot be used: {exc}"
        self._retrying = Retrying(
            "Webflow",
            http,
            unusable,
            _message,
            limiter=rate_limiter or RateLimiter(float(rate), 60.0),
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            retry_after_max=retry_after_max,
            pause_429=60.0,
            scrub=self._scrub,
            sleep=sleep,
            jitter=jitter,
        )

    def __repr__(self) -> str:
        return f"WebflowConnector({self._base_url!r}, collections={self._collections!r})"

    # -- writes ------------------------------------------------------------------------

    async def create(self, folder: str, fields: JsonObject, idempotency_key: str) -> Record:
        (outcome,) = await self.create_many(folder, [fields], idempotency_key)
        if isinstance(outcome, ConnectorError):
            raise outcome
        return outcome

    async def update(
        self,
        folder: str,
        record_id: str,
        fields: JsonObject,
        idempotency_key: str,
        *,
        if_match: str | None = None,
    ) -> Record:
        if if_match is not None:
            raise ValueError("Webflow has no conditional writes (version_field is None)")
        (outcome,) = await self.update_many(
            folder, [RecordUpdate(record_id, fields)], idempotency_key
        )
        if isinstance(outcome, ConnectorError):
            raise outcome
        return outcome

    async def create_many(
        self, folder: str, items: Sequence[JsonObject], idempotency_key: str
    ) -> list[ItemOutcome]:
        """Create up to 100 items; after an unknown answer, only those not found by slug.

        A retry that is refused whole after some items were found created can't
        be raised as one error (those items exist): the rest go one by one.
        """
        _check_batch(items, self.batch_limits.create)
        path = self._items_path(folder, live=self._live)
        outcomes: list[ItemOutcome | None] = [None] * len(items)
        pending = list(range(len(items)))
        for round_no in range(self._max_retries + 1):
            body = {"items": [_write_item(items[i]) for i in pending]}
            try:
                answer = await self._call("POST", path, body, batch=len(pending), resend=False)
            except MaybeApplied:
                found = await self.find_created(folder, [items[i] for i in pending])
                for i, record in zip(pending, found, strict=True):
                    outcomes[i] = record
                pending = [i for i in pending if outcomes[i] is None]
                if not pending:
                    return [o for o in outcomes if o is not None]
                await self._sleep(self._retrying.delay(round_no, None))
                continue
            except EntryRejected as exc:
                if len(pending) == len(items):
                    raise
                if exc.index is not None:
                    exc.index = pending[exc.index]
                    raise
                for i in pending:
                    outcomes[i] = await _outcome(self.create(folder, items[i], idempotency_key))
                return [o for o in outcomes if o is not None]
            for i, record in zip(pending, _records(answer, len(pending)), strict=True):
                outcomes[i] = record
            return [o for o in outcomes if o is not None]
        raise TransientFailure(
            f"POST {path}: no answer known after {self._max_retries + 1} attempts"
        )

    async def update_many(
        self, folder: str, items: Sequence[RecordUpdate], idempotency_key: str
    ) -> list[ItemOutcome]:
        """Patch up to 100 items (a PATCH is safe to re-send: it sets the same values)."""
        _check_batch(items, self.batch_limits.update)
        if any(item.if_match is not None for item in items):
            raise ValueError("Webflow has no conditional writes (version_field is None)")
        body = {"items": [{"id": i.record_id, **_write_item(i.fields)} for i in items]}
        path = self._items_path(folder, live=self._live)
        answer = await self._call("PATCH", path, body, batch=len(items))
        by_id = {r.id: r for r in _records(answer, len(items))}
        try:
            return [by_id[item.record_id] for item in items]
        except KeyError as exc:
            raise TransientFailure(f"PATCH {path}: the answer lacks item {exc}") from None

    async def delete_many(
        self, folder: str, record_ids: Sequence[str], idempotency_key: str
    ) -> None:
        """Delete all or none; live: off the site first, then out of the CMS."""
        if len(record_ids) > self.batch_limits.delete:
            raise ValueError(f"at most {self.batch_limits.delete} ids per delete")
        if not record_ids:
            return
        for live in (True, False) if self._live else (False,):
            await self._delete(folder, list(dict.fromkeys(record_ids)), live=live)

    async def _delete(self, folder: str, ids: list[str], *, live: bool) -> None:
        """A 404 means some are gone already (a retry after a lost answer): delete the rest."""
        path = self._items_path(folder, live=live)
        try:
            await self._call("DELETE", path, {"items": [{"id": i} for i in ids]})
        except EntryRejected as exc:
            if exc.status != 404:
                raise
            present = [i for i in ids if await self._exists(folder, i, live=live)]
            if len(present) == len(ids):
                raise
            if present:
                await self._call("DELETE", path, {"items": [{"id": i} for i in present]})

    async def _exists(self, folder: str, item_id: str, *, live: bool) -> bool:
        suffix = "/live" if live else ""
        try:
            await self._call("GET", f"{self._item_path(folder, item_id)}{suffix}")
        except EntryRejected as exc:
            if exc.status == 404:
                return False
            raise
        return True

    # -- reads -------------------------------------------------------------------------

    async def list_page(self, folder: str, offset: int, limit: int) -> RecordPage:
        params = {"offset": offset, "limit": max(1, min(limit, PAGE))}
        answer = await self._call("GET", self._items_path(folder), params=params)
        try:
            total = int(answer["pagination"]["total"])
            return RecordPage([_record(item) for item in answer["items"]], total)
        except (KeyError, TypeError, ValueError) as exc:
            raise TransientFailure(f"malformed page from Webflow: {exc!r}") from exc

    async def read(self, folder: str, record_id: str) -> Record | None:
        try:
            answer = await self._call("GET", self._item_path(folder, record_id))
        except EntryRejected as exc:
            if exc.status == 404:
                return None
            raise
        return _record(answer)

    async def find_created(self, folder: str, items: Sequence[JsonObject]) -> list[Record | None]:
        """The item each create already made, found by its unique slug (None: not there)."""
        slugs = [item.get("slug") for item in items]
        wanted = {s for s in slugs if isinstance(s, str) and s}
        found = await self._look_up(folder, wanted, _slug_of, partial(self._by_slugs, folder))
        return [found.get(s) if isinstance(s, str) else None for s in slugs]

    async def read_many(self, folder: str, record_ids: Sequence[str]) -> dict[str, Record]:
        """The items of ``record_ids`` still there: read one by one or listed, whichever is
        fewer requests (an upstream check of a batch of 100 edits is then a few pages)."""

        async def one_by_one(ids: set[str]) -> dict[str, Record]:
            return await Connector.read_many(self, folder, sorted(ids))

        return await self._look_up(folder, set(record_ids), lambda r: r.id, one_by_one)

    async def _look_up(
        self,
        folder: str,
        wanted: set[str],
        key: Callable[[Record], str | None],
        one_by_one: Callable[[set[str]], Awaitable[dict[str, Record]]],
    ) -> dict[str, Record]:
        """Items by ``key`` in ``wanted``: one request each, or the collection's listing.

        One is one request. More: the first page of the listing, which also
        gives the total; then whichever is fewer requests, the rest of the
        listing or one request per item still missing.
        """
        if len(wanted) <= 1:
            return await one_by_one(wanted) if wanted else {}
        page = await self.list_page(folder, 0, PAGE)
        found = _matching(page.records, wanted, key)
        offset = len(page.records)
        missing = wanted - set(found)
        pages_left = math.ceil(max(0, page.total - offset) / PAGE)
        if missing and pages_left and pages_left <= len(missing):
            while offset < page.total and missing:
                more = await self.list_page(folder, offset, PAGE)
                if not more.records:
                    break
                found.update(_matching(more.records, missing, key))
                missing -= set(found)
                offset += len(more.records)
        elif missing and pages_left:
            found.update(await one_by_one(missing))
        return found

    async def _by_slugs(self, folder: str, slugs: set[str]) -> dict[str, Record]:
        async def one(slug: str) -> list[Record]:
            params: JsonObject = {"slug": slug, "limit": 1}
            answer = await self._call("GET", self._items_path(folder), params=params)
            return [_record(item) for item in answer.get("items") or []]

        pages = await asyncio.gather(*(one(slug) for slug in sorted(slugs)))
        return _matching([r for page in pages for r in page], slugs)

    async def describe(self) -> list[CollectionDescription]:
        """Each mapped collection with its fields (a wrong id is an ``EntryRejected`` 404)."""
        infos = []
        for folder, collection_id in self._collections.items():
            answer = await self._call("GET", f"/collections/{quote(collection_id, safe='')}")
            infos.append(_collection_info(folder, collection_id, answer))
        return infos

    # -- end of a run ------------------------------------------------------------------

    async def finish_run(self, changed: Mapping[str, Sequence[str]]) -> None:
        """Staged mode: publish what the pipeline created or updated, 100 items a request.

        Publishing twice is harmless, so a resumed run may call this again.
        Items Webflow refuses to publish are reported together, after every
        batch was tried, so one bad item does not keep the rest off the site.
        """
        if self._live:
            return
        errors: list[str] = []
        for folder, ids in changed.items():
            unique = list(dict.fromkeys(ids))
            path = f"{self._items_path(folder)}/publish"
            for start in range(0, len(unique), PAGE):
                body = {"itemIds": unique[start : start + PAGE]}
                answer = await self._call("POST", path, body)
                refused = answer.get("errors") if isinstance(answer, dict) else None
                errors.extend(f"{folder}: {e}" for e in refused or [])
        if errors:
            raise TransientFailure(f"Webflow did not publish {len(errors)} item(s): {errors[:5]}")

    async def aclose(self) -> None:
        if self._retrying.http is not None:
            await self._retrying.http.aclose()

    # -- HTTP --------------------------------------------------------------------------

    def _collection(self, folder: str) -> str:
        collection_id = self._collections.get(folder.strip("/"))
        if collection_id is None:
            raise FatalConnectorError(f"folder {folder!r} is not mapped to a Webflow collection")
        return f"/collections/{quote(collection_id, safe='')}"

    def _items_path(self, folder: str, *, live: bool = False) -> str:
        return f"{self._collection(folder)}/items{'/live' if live else ''}"

    def _item_path(self, folder: str, item_id: str) -> str:
        return f"{self._collection(folder)}/items/{quote(item_id, safe='')}"

    async def _call(
        self,
        method: str,
        path: str,
        body: JsonValue = None,
        *,
        params: JsonObject | None = None,
        batch: int = 0,
        resend: bool = True,
    ) -> JsonValue:
        """One logical call (``Retrying``); its final answer classified.

        ``batch``: the items of a bulk write, whose refusal may name one.
        ``resend=False``: an attempt that may have been applied is not sent
        again but raises ``MaybeApplied`` for the caller to look first.
        """
        response = await self._retrying.call(method, path, body, params=params, resend=resend)
        status = response.status
        if status < 400:
            return json_of(response, "Webflow")
        details = self._scrub_json(details_of(response))
        message = self._scrub(f"{response.method} {response.path}: {_message(response)}")
        if status in (401, 403):
            raise FatalConnectorError(
                f"Webflow refused the token: {message}", status=status, details=details
            )
        index = _index(details, batch) if batch else None
        raise EntryRejected(message, status=status, details=details, index=index)

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "[token]") if self._token else text

    def _scrub_json(self, value: JsonValue) -> JsonValue:
        if isinstance(value, str):
            return self._scrub(value)
        if isinstance(value, list):
            return [self._scrub_json(v) for v in value]
        if isinstance(value, dict):
            return {k: self._scrub_json(v) for k, v in value.items()}
        return value


def _check_batch(items: Sequence[object], limit: int) -> None:
    if not 1 <= len(items) <= limit:
        raise ValueError(f"a bulk request takes 1 to {limit} items, not {len(items)}")


async def _outcome(call: Awaitable[Record]) -> ItemOutcome:
    """One item's outcome of its own request: a fatal error still stops everything."""
    try:
        return await call
    except FatalConnectorError:
        raise
    except ConnectorError as exc:
        return exc.for_item()


def _write_item(fields: JsonObject) -> JsonObject:
    """An item to send: the flags at the top level, every other field in ``fieldData``."""
    item: JsonObject = {"fieldData": {k: v for k, v in fields.items() if k not in FLAGS}}
    item.update({k: fields[k] for k in FLAGS if isinstance(fields.get(k), bool)})
    return item


def _record(item: JsonValue) -> Record:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        raise TransientFailure(f"malformed item from Webflow: {item!r:.200}")
    computed = {k: item[k] for k in COMPUTED if k in item}
    return Record(item["id"], dict(item.get("fieldData") or {}), computed)


def _records(answer: JsonValue, expected: int) -> list[Record]:
    items = answer.get("items") if isinstance(answer, dict) else None
    if not isinstance(items, list) or len(items) != expected:
        raise TransientFailure(f"a bulk answer from Webflow without {expected} items")
    return [_record(item) for item in items]


def _slug_of(record: Record) -> str | None:
    slug = record.field_data.get("slug")
    return slug if isinstance(slug, str) else None


def _matching(
    records: Sequence[Record], wanted: set[str], key: Callable[[Record], str | None] = _slug_of
) -> dict[str, Record]:
    found: dict[str, Record] = {}
    for record in records:
        value = key(record)
        if value is not None and value in wanted:
            found[value] = record
    return found


def _collection_info(folder: str, collection_id: str, answer: JsonValue) -> CollectionDescription:
    raw = answer.get("fields") if isinstance(answer, dict) else None
    if not isinstance(raw, list):
        raise TransientFailure(f"malformed collection {collection_id} from Webflow")
    fields = tuple(
        FieldDescription(
            str(f.get("slug")),
            str(f.get("type")),
            (f.get("validations") or {}).get("collectionId")
            if f.get("type") in ("Reference", "MultiReference")
            else None,
        )
        for f in raw
        if isinstance(f, dict)
    )
    name = str(answer.get("displayName") or "")
    return CollectionDescription(folder, collection_id, collection_id, name, fields)


def _index(details: JsonValue, batch: int) -> int | None:
    """The item a refusal names: ``items[N]...`` in a detail's ``param``, or the only one."""
    if batch == 1:
        return 0
    entries = details.get("details") if isinstance(details, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        param = entry.get("param") if isinstance(entry, dict) else None
        match = _ITEM_PARAM.match(param) if isinstance(param, str) else None
        if match and int(match.group(1)) < batch:
            return int(match.group(1))
    return None


def _message(response: Response) -> str:
    details = details_of(response)
    if not isinstance(details, dict):
        return str(details or response.reason)[:500]
    message = str(details.get("message") or response.reason)
    about = details.get("details")
    if isinstance(about, list) and about and isinstance(about[0], dict):
        first = about[0]
        if "description" in first:
            message += f" ({first.get('param')}: {first.get('description')})"
    return message
