"""The Airtable connector: publishd's ``Connector`` over Airtable's Web API (CONNECTORS.md).

What Airtable does differently from the sandbox, and what this adapter does about it:

- **No idempotency keys.** A create goes out as an upsert (``PATCH`` with
  ``performUpsert`` on the folder's merge field, ``"merge_on": {folder: name}``
  in the config, ``"slug"`` by default), so a create re-sent after a lost
  answer or a crash updates the record the first one made instead of making a
  second: ``creates_idempotently`` holds and ``find_created`` is not needed.
  Items of a batch without a value for the merge field (or a folder mapped to
  ``null``) go out as a plain ``POST``, which has no such protection. A delete
  re-sent after its records are gone (``ROW_DOES_NOT_EXIST``) deletes what is
  left: a record that is not there is what a delete wants.
- **Empty values are left out of answers** (``""``, ``[]``, ``false``, null):
  a record returned by a write gets back each field this write sent empty and
  the answer left out, so main holds what the draft holds. Reads return what
  the service returns; no field is invented.
- **Cursor paging.** ``list_page`` takes offsets, Airtable takes an opaque
  ``offset`` cursor: the cursor that follows each page is kept per (folder,
  offset) for the next page of the same listing. A listing asked for an offset
  it has no cursor for, or whose cursor expired (``422
  LIST_RECORDS_ITERATOR_NOT_AVAILABLE``), starts again at the first page and
  skips to the offset. Airtable gives no total: ``RecordPage.total`` is
  ``offset + len(records)``, plus one while more pages remain, so a reader
  goes on exactly while there is more.
- **Rate limit**: 5 requests per second per base, and over it a 429 with no
  ``Retry-After`` and about 30 s of refusals. Requests are paced by the shared
  ``RateLimiter``; a 429 pauses it for ``rate_penalty`` seconds for every
  caller (without a limiter, the retry itself waits that long).
- **Errors** are classified as in the sandbox adapter (retry 429/5xx/transport
  failures with backoff and full jitter; an outage past the budget is fatal;
  401/403, which includes an unknown base or table, are fatal at once; other
  4xx reject the request). Airtable refuses a batch whole and rarely says
  which record it was for: the error's ``index`` is set when the message
  names a record of the batch (its id, or a field only one record sends),
  else it is None and the engine halves the batch.

``version_field`` is None: Airtable has no conditional writes. The token lives
only in the HTTP client's headers: not in an attribute, a message or ``repr``.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from multidict import MultiDict

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
from infrastructure.connectors.retrying import Retrying, details_of, json_of

DEFAULT_MERGE_FIELD = "slug"
RATE_PENALTY_S = 30.0
"""How long Airtable refuses requests after a 429 (CONNECTORS.md)."""
CURSORS_KEPT = 256
_EXPIRED_CURSOR = "LIST_RECORDS_ITERATOR_NOT_AVAILABLE"
_MISSING_ROW = "ROW_DOES_NOT_EXIST"
_RECORD_ID = re.compile(r"\brec[A-Za-z0-9]{14}\b")
_QUOTED_FIELD = re.compile(r'[Ff]ield(?: name)?:? "([^"]+)"')
_RECORD_INDEX = re.compile(r"records\[(\d+)\]")
READ_MANY = 50
"""Record ids per filtered read: well under Airtable's 16,000-character URL limit."""


@dataclass(frozen=True)
class _Sent:
    """One record of a write, for naming the culprit of a refusal and restoring empties."""

    record_id: str | None
    fields: JsonObject


class AirtableConnector(Connector):
    batch_limits = BATCH_LIMITS["airtable"]
    list_page_size = 100
    version_field = None
    creates_idempotently = True
    omits_empty_fields = True

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
        timeout: float = 10.0,
        rate_penalty: float = RATE_PENALTY_S,
        sleep: Sleep = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._cursors: dict[tuple[str, int], str] = {}
        """The cursor of the page that starts at (folder, offset), from the page before it."""
        base_id, tables, merge_on = (
            config.get("base_id"),
            config.get("tables"),
            config.get("merge_on"),
        )
        self._base_id = base_id if isinstance(base_id, str) else ""
        self._tables = (
            {str(k): str(v) for k, v in tables.items()} if isinstance(tables, dict) else {}
        )
        self._merge_on = dict(merge_on) if isinstance(merge_on, dict) else {}
        http: HttpClient | None = None
        unusable = _config_problem(config, token)
        if unusable is None:
            try:
                http = HttpClient(
                    str(config["base_url"]),
                    size=concurrency,
                    timeout=timeout,
                    headers={"Authorization": f"Bearer {token}"},
                )
            except InvalidAddress as exc:
                unusable = f"the Airtable connector cannot be used: {exc}"
        # Airtable's 429 has no Retry-After and is followed by ~30 s of refusals: the
        # limiter pauses that long, or without one the retry itself waits it out.
        self._retrying = Retrying(
            "Airtable",
            http,
            unusable,
            _message,
            limiter=rate_limiter,
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            retry_after_max=max(60.0, rate_penalty),
            pause_429=rate_penalty,
            wait_429=rate_penalty,
            sleep=sleep,
            jitter=jitter,
        )

    def __repr__(self) -> str:
        return f"AirtableConnector(base_id={self._base_id!r}, tables={sorted(self._tables)!r})"

    # -- writes ------------------------------------------------------------------------

    async def create(self, folder: str, fields: JsonObject, idempotency_key: str) -> Record:
        return _only(await self.create_many(folder, [fields], idempotency_key))

    async def update(
        self,
        folder: str,
        record_id: str,
        fields: JsonObject,
        idempotency_key: str,
        *,
        if_match: str | None = None,
    ) -> Record:
        item = RecordUpdate(record_id, fields, if_match)
        return _only(await self.update_many(folder, [item], idempotency_key))

    async def create_many(
        self, folder: str, items: Sequence[JsonObject], idempotency_key: str
    ) -> list[ItemOutcome]:
        _check_batch(items, self.batch_limits.create)
        sent = [_Sent(None, dict(fields)) for fields in items]
        merge = self._merge_field(folder)
        body: JsonObject = {"records": [{"fields": s.fields} for s in sent]}
        if merge is not None and all(not _empty(s.fields.get(merge)) for s in sent):
            _check_distinct(sent, merge)
            body["performUpsert"] = {"fieldsToMergeOn": [merge]}
            response = await self._call("PATCH", self._table(folder), body, sent=sent)
        else:
            response = await self._call("POST", self._table(folder), body, sent=sent)
        return _records(response, sent)

    async def update_many(
        self, folder: str, items: Sequence[RecordUpdate], idempotency_key: str
    ) -> list[ItemOutcome]:
        _check_batch(items, self.batch_limits.update)
        sent = [_Sent(item.record_id, dict(item.fields)) for item in items]
        body = {"records": [{"id": s.record_id, "fields": s.fields} for s in sent]}
        response = await self._call("PATCH", self._table(folder), body, sent=sent)
        return _records(response, sent)

    async def delete_many(
        self, folder: str, record_ids: Sequence[str], idempotency_key: str
    ) -> None:
        if len(record_ids) > self.batch_limits.delete:
            raise ValueError(f"at most {self.batch_limits.delete} ids per delete")
        ids = list(dict.fromkeys(record_ids))
        if not ids:
            return
        try:
            await self._delete(folder, ids)
        except EntryRejected as exc:
            if _error_type(exc.details) != _MISSING_ROW:
                raise
            left = [i for i in ids if await self.read(folder, i) is not None]
            if left:
                await self._delete(folder, left)

    async def _delete(self, folder: str, ids: list[str]) -> None:
        params = MultiDict(("records[]", record_id) for record_id in ids)
        await self._call("DELETE", self._table(folder), params=params)

    # -- reads -------------------------------------------------------------------------

    async def read(self, folder: str, record_id: str) -> Record | None:
        try:
            response = await self._call("GET", f"{self._table(folder)}/{quote(record_id, safe='')}")
        except EntryRejected as exc:
            if exc.status == 404:
                return None
            raise
        return _record(_json(response))

    async def list_page(self, folder: str, offset: int, limit: int) -> RecordPage:
        size = max(1, min(limit, self.list_page_size))
        cursor = self._cursors.pop((folder, offset), None)
        if offset == 0 or cursor is not None:
            try:
                records, following = await self._page(folder, size, cursor)
            except EntryRejected as exc:
                if _error_type(exc.details) != _EXPIRED_CURSOR:
                    raise
                records, following = await self._skip_to(folder, offset, size)
        else:
            records, following = await self._skip_to(folder, offset, size)
        end = offset + len(records)
        if following is not None:
            self._keep_cursor(folder, end, following)
        return RecordPage(records, end + (1 if following is not None else 0))

    async def read_many(self, folder: str, record_ids: Sequence[str]) -> dict[str, Record]:
        """The records of ``record_ids`` still there, ``READ_MANY`` ids a request through
        ``filterByFormula`` (``OR(RECORD_ID()='rec…', …)``), not one request each."""
        wanted = [rid for rid in dict.fromkeys(record_ids) if _RECORD_ID.fullmatch(rid)]
        found: dict[str, Record] = {}
        for start in range(0, len(wanted), READ_MANY):
            chunk = wanted[start : start + READ_MANY]
            formula = "OR(" + ",".join(f"RECORD_ID()='{rid}'" for rid in chunk) + ")"
            params: JsonObject = {"pageSize": self.list_page_size, "filterByFormula": formula}
            body = _json(await self._call("GET", self._table(folder), params=params))
            try:
                records = [_record(r) for r in body["records"]]
            except (AttributeError, KeyError, TypeError) as exc:
                raise TransientFailure(f"malformed records from Airtable: {exc!r}") from exc
            found.update((r.id, r) for r in records if r.id in chunk)
        return found

    async def _skip_to(
        self, folder: str, offset: int, size: int
    ) -> tuple[list[Record], str | None]:
        """The records from ``offset`` to the end of its page, read from the first page on."""
        position, cursor = 0, None
        while True:
            records, following = await self._page(folder, size, cursor)
            if position + len(records) > offset or following is None:
                return records[max(0, offset - position) :], following
            position, cursor = position + len(records), following

    async def _page(
        self, folder: str, size: int, cursor: str | None
    ) -> tuple[list[Record], str | None]:
        params: JsonObject = {"pageSize": size}
        if cursor is not None:
            params["offset"] = cursor
        body = _json(await self._call("GET", self._table(folder), params=params))
        try:
            following = body.get("offset")
            return [_record(r) for r in body["records"]], following if following else None
        except (AttributeError, KeyError, TypeError) as exc:
            raise TransientFailure(f"malformed page from Airtable: {exc!r}") from exc

    def _keep_cursor(self, folder: str, offset: int, cursor: str) -> None:
        self._cursors[(folder, offset)] = cursor
        while len(self._cursors) > CURSORS_KEPT:
            del self._cursors[next(iter(self._cursors))]

    async def describe(self) -> list[CollectionDescription]:
        """Each mapped folder's table and fields, from the Meta API (``connectors check``)."""
        body = _json(await self._call("GET", f"/meta/bases/{quote(self._base_id, safe='')}/tables"))
        tables = body.get("tables") if isinstance(body, dict) else None
        if not isinstance(tables, list):
            raise TransientFailure("malformed table list from Airtable")
        infos = []
        for folder, wanted in self._tables.items():
            table = next((t for t in tables if wanted in (t.get("id"), t.get("name"))), None)
            if table is None:
                infos.append(CollectionDescription(folder, wanted, None, None))
                continue
            fields = tuple(_field_info(f) for f in table.get("fields") or [])
            infos.append(
                CollectionDescription(folder, wanted, table.get("id"), table.get("name"), fields)
            )
        return infos

    async def aclose(self) -> None:
        if self._retrying.http is not None:
            await self._retrying.http.aclose()

    # -- the call loop -----------------------------------------------------------------

    def _table(self, folder: str) -> str:
        table = self._tables.get(folder)
        if table is None:
            raise EntryRejected(f"folder {folder!r} is not mapped to an Airtable table")
        return f"/{quote(self._base_id, safe='')}/{quote(table, safe='')}"

    def _merge_field(self, folder: str) -> str | None:
        merge = self._merge_on.get(folder, DEFAULT_MERGE_FIELD)
        return merge if isinstance(merge, str) and merge else None

    async def _call(
        self,
        method: str,
        path: str,
        body: JsonValue = None,
        *,
        params: Mapping[str, JsonValue] | None = None,
        sent: Sequence[_Sent] | None = None,
    ) -> Response:
        """One logical call (``Retrying``); its final answer classified."""
        response = await self._retrying.call(method, path, body, params=params)
        status = response.status
        if status < 400:
            return response
        details = details_of(response)
        message = f"{response.method} {response.path}: {_message(response)}"
        if status in (401, 403):
            raise FatalConnectorError(
                f"Airtable refused the token or the base/table: {message}",
                status=status,
                details=details,
            )
        index = _culprit(details, sent) if sent is not None and len(sent) > 1 else None
        raise EntryRejected(message, status=status, details=details, index=index)


def _config_problem(config: Mapping[str, JsonValue], token: str) -> str | None:
    """Why no call can succeed with this config, answered to each call; None: usable."""
    prefix = "the Airtable connector cannot be used: "
    if not isinstance(config.get("base_url"), str):
        return prefix + "base_url must be a string"
    if not isinstance(config.get("base_id"), str) or not config["base_id"]:
        return prefix + "base_id must be a base id (app...)"
    tables = config.get("tables")
    if not isinstance(tables, dict) or not all(isinstance(v, str) for v in tables.values()):
        return prefix + "tables must map folders to table ids or names"
    if not token:
        return prefix + "no token"
    return None


def _check_batch(items: Sequence[object], limit: int) -> None:
    if not 1 <= len(items) <= limit:
        raise ValueError(f"a bulk request takes 1 to {limit} items, not {len(items)}")


def _check_distinct(sent: Sequence[_Sent], merge: str) -> None:
    """Two creates of one batch with one merge value would upsert into a single record."""
    seen: dict[str, int] = {}
    for index, item in enumerate(sent):
        key = repr(item.fields.get(merge))
        if key in seen:
            raise EntryRejected(
                f"records {seen[key]} and {index} of one create share {merge} {key}", index=index
            )
        seen[key] = index


def _empty(value: JsonValue) -> bool:
    return value is None or value == "" or value == [] or value is False


def _record(item: JsonValue, sent: _Sent | None = None) -> Record:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        raise TransientFailure(f"malformed record from Airtable: {item!r:.200}")
    fields = dict(item.get("fields") or {})
    if sent is not None:
        for name, value in sent.fields.items():
            if _empty(value) and name not in fields:
                fields[name] = value
    computed = {"createdTime": item["createdTime"]} if "createdTime" in item else {}
    return Record(item["id"], fields, computed)


def _records(response: Response, sent: Sequence[_Sent]) -> list[ItemOutcome]:
    body = _json(response)
    records = body.get("records") if isinstance(body, dict) else None
    if not isinstance(records, list) or len(records) != len(sent):
        raise TransientFailure(f"a batch answer from Airtable without {len(sent)} records")
    return [_record(item, s) for item, s in zip(records, sent, strict=True)]


def _only(outcomes: list[ItemOutcome]) -> Record:
    outcome = outcomes[0]
    if isinstance(outcome, ConnectorError):
        raise outcome
    return outcome


def _culprit(details: JsonValue, sent: Sequence[_Sent]) -> int | None:
    """The record of a batch a refusal is about, when its message names one; else None."""
    message = _error_message(details)
    found = _RECORD_INDEX.search(message)
    if found and int(found.group(1)) < len(sent):
        return int(found.group(1))
    for record_id in _RECORD_ID.findall(message):
        own = [i for i, s in enumerate(sent) if s.record_id == record_id]
        linking = [i for i, s in enumerate(sent) if record_id in repr(s.fields)]
        for candidates in (own, linking):
            if len(candidates) == 1:
                return candidates[0]
    named = _QUOTED_FIELD.search(message)
    if named:
        carrying = [i for i, s in enumerate(sent) if named.group(1) in s.fields]
        if len(carrying) == 1:
            return carrying[0]
    return None


def _field_info(raw: JsonValue) -> FieldDescription:
    options = raw.get("options") if isinstance(raw, dict) else None
    link = options.get("linkedTableId") if isinstance(options, dict) else None
    return FieldDescription(str(raw.get("name")), str(raw.get("type")), link)


def _json(response: Response) -> JsonValue:
    return json_of(response, "Airtable")


def _error_type(details: JsonValue) -> str | None:
    """``error.type`` of ``{"error": {"type", "message"}}``, or the bare ``{"error": "..."}``."""
    error = details.get("error") if isinstance(details, dict) else None
    if isinstance(error, dict):
        kind = error.get("type")
        return kind if isinstance(kind, str) else None
    return error if isinstance(error, str) else None


def _error_message(details: JsonValue) -> str:
    error = details.get("error") if isinstance(details, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or "")
    errors = details.get("errors") if isinstance(details, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return str(errors[0].get("message") or "")
    return ""


def _message(response: Response) -> str:
    details = details_of(response)
    kind = _error_type(details)
    errors = details.get("errors") if isinstance(details, dict) else None
    if kind is None and isinstance(errors, list) and errors and isinstance(errors[0], dict):
        kind = str(errors[0].get("error"))
    text = _error_message(details)
    if kind is None:
        return str(details or response.reason)[:300]
    return f"{kind}: {text}" if text else kind
