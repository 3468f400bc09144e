"""The sandbox connector: publishd's ``Connector`` over the sandbox's HTTP API.

The run engine sees three outcomes besides success, and this adapter's job is
to choose between them honestly:

- transient failures (timeouts, 5xx, 429, dropped connections) are retried
  with exponential backoff and full jitter, never sooner than ``Retry-After``;
  writes carry the caller's ``Idempotency-Key``, so a retry after a lost answer
  replays the first answer instead of writing twice;
- when the budget is spent, ``FatalConnectorError`` if the service showed no
  sign of life the whole time (connection refused, or nothing but 503 while no
  other call of this connector succeeded: an outage), so the run stops and can
  be resumed later; otherwise ``TransientFailure`` and only this entry fails;
- a 401/403 is fatal at once (retrying can't fix credentials), and so is a
  base URL no request can go to; a 412 to a
  conditional update (``If-Match: <lastUpdated>``, or an item's ``ifMatch``
  in a bulk update) is ``PreconditionFailed``:
  the record changed upstream, and only the caller can decide what that means;
  any other 4xx is this record's problem: ``EntryRejected`` with the service's
  body as details. ``read`` answers None for a 404: a record that is not there
  is an answer, not a failure.

Creates and updates go out in bulk requests of up to 100 items; the sandbox
refuses a bulk request whole for one bad item and names its ``index``, which
the error carries for the run engine to split around. Requests are paced by
the shared ``RateLimiter`` of the sandbox's address when the workspace gives
a rate; a 429's ``Retry-After`` pauses that limiter for every caller, and
``X-RateLimit-Remaining`` tells it about requests others made.

Throughput: calls go through aiohttp (see ``http_client`` for why not httpx).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from urllib.parse import quote

from application.connector import (
    Connector,
    ConnectorError,
    EntryRejected,
    FatalConnectorError,
    ItemOutcome,
    PreconditionFailed,
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


class SandboxConnector(Connector):
    batch_limits = BATCH_LIMITS["sandbox"]
    list_page_size = 100

    def __init__(
        self,
        base_url: str,
        *,
        concurrency: int = 64,
        max_retries: int = 5,
        backoff_base: float = 0.1,
        backoff_max: float = 10.0,
        retry_after_max: float = 60.0,
        rate_limiter: RateLimiter | None = None,
        timeout: float = 10.0,
        auth_token: str | None = None,
        sleep: Sleep = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        headers = {"Authorization": f"Bearer {auth_token}"} if auth_token else {}
        http: HttpClient | None = None
        unusable: str | None = None
        # Why no call can succeed, answered to each: a run or pull then ends failed with
        # the reason, where a constructor that raised would crash it before it recorded any.
        try:
            http = HttpClient(base_url, size=concurrency, timeout=timeout, headers=headers)
        except InvalidAddress as exc:
            unusable = f"the sandbox connector cannot be used: {exc}"
        self._retrying = Retrying(
            "sandbox",
            http,
            unusable,
            _message,
            limiter=rate_limiter,
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            retry_after_max=retry_after_max,
            sleep=sleep,
            jitter=jitter,
        )

    async def create(self, folder: str, fields: JsonObject, idempotency_key: str) -> Record:
        response = await self._call(
            "POST", f"{_collection(folder)}/items", {"fieldData": fields}, idempotency_key
        )
        return _record(_json(response))

    async def update(
        self,
        folder: str,
        record_id: str,
        fields: JsonObject,
        idempotency_key: str,
        *,
        if_match: str | None = None,
    ) -> Record:
        headers = {"If-Match": if_match} if if_match is not None else {}
        response = await self._call(
            "PATCH",
            _item(folder, record_id),
            {"fieldData": fields},
            idempotency_key,
            headers=headers,
        )
        return _record(_json(response))

    async def create_many(
        self, folder: str, items: Sequence[JsonObject], idempotency_key: str
    ) -> list[ItemOutcome]:
        self._check_batch(items, self.batch_limits.create)
        body = {"items": [{"fieldData": fields} for fields in items]}
        response = await self._call(
            "POST", f"{_collection(folder)}/items", body, idempotency_key, batch=True
        )
        return _records(_json(response), len(items))

    async def update_many(
        self, folder: str, items: Sequence[RecordUpdate], idempotency_key: str
    ) -> list[ItemOutcome]:
        self._check_batch(items, self.batch_limits.update)
        body = {"items": [_update_item(item) for item in items]}
        response = await self._call(
            "PATCH", f"{_collection(folder)}/items", body, idempotency_key, batch=True
        )
        return _records(_json(response), len(items))

    @staticmethod
    def _check_batch(items: Sequence[object], limit: int) -> None:
        if not 1 <= len(items) <= limit:
            raise ValueError(f"a bulk request takes 1 to {limit} items, not {len(items)}")

    async def read(self, folder: str, record_id: str) -> Record | None:
        try:
            response = await self._call("GET", _item(folder, record_id))
        except EntryRejected as exc:
            if exc.status == 404:
                return None
            raise
        return _record(_json(response))

    async def delete_many(
        self, folder: str, record_ids: Sequence[str], idempotency_key: str
    ) -> None:
        if len(record_ids) > self.batch_limits.delete:
            raise ValueError(f"at most {self.batch_limits.delete} ids per delete")
        if record_ids:
            body = {"items": list(record_ids)}
            await self._call("DELETE", f"{_collection(folder)}/items", body, idempotency_key)

    async def list_page(self, folder: str, offset: int, limit: int) -> RecordPage:
        params = {"offset": offset, "limit": min(limit, self.list_page_size)}
        response = await self._call("GET", f"{_collection(folder)}/items", params=params)
        body = _json(response)
        try:
            return RecordPage([_record(item) for item in body["items"]], int(body["total"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise TransientFailure(f"malformed page from the sandbox: {exc!r}") from exc

    async def aclose(self) -> None:
        if self._retrying.http is not None:
            await self._retrying.http.aclose()

    async def _call(
        self,
        method: str,
        path: str,
        body: JsonValue = None,
        idempotency_key: str | None = None,
        *,
        params: JsonObject | None = None,
        headers: dict[str, str] | None = None,
        batch: bool = False,
    ) -> Response:
        """One logical call (``Retrying``); its final answer classified.

        ``batch``: a bulk request, whose refusal may name the item it is about.
        """
        if idempotency_key:
            headers = {**(headers or {}), "Idempotency-Key": idempotency_key}
        response = await self._retrying.call(method, path, body, params=params, headers=headers)
        status = response.status
        if status < 400:
            return response
        details = details_of(response)
        message = f"{response.method} {response.path}: {_message(response)}"
        if status in (401, 403):
            raise FatalConnectorError(f"auth rejected: {message}", status=status, details=details)
        index = _index(details) if batch else None
        error: type[ConnectorError] = PreconditionFailed if status == 412 else EntryRejected
        raise error(message, status=status, details=details, index=index)


def _collection(folder: str) -> str:
    return f"/collections/{quote(folder.strip('/'), safe='/')}"


def _item(folder: str, record_id: str) -> str:
    return f"{_collection(folder)}/items/{quote(record_id, safe='')}"


def _record(item: JsonValue) -> Record:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        raise TransientFailure(f"malformed item from the sandbox: {item!r:.200}")
    computed = {k: v for k, v in item.items() if k not in ("id", "fieldData")}
    return Record(item["id"], dict(item.get("fieldData") or {}), computed)


def _records(body: JsonValue, expected: int) -> list[ItemOutcome]:
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list) or len(items) != expected:
        raise TransientFailure(f"a bulk answer from the sandbox without {expected} items")
    return [_record(item) for item in items]


def _update_item(item: RecordUpdate) -> JsonObject:
    body: JsonObject = {"id": item.record_id, "fieldData": item.fields}
    if item.if_match is not None:
        body["ifMatch"] = item.if_match
    return body


def _index(details: JsonValue) -> int | None:
    """The item a bulk refusal names (the sandbox's ``index``), if any."""
    index = details.get("index") if isinstance(details, dict) else None
    return index if isinstance(index, int) and not isinstance(index, bool) else None


def _json(response: Response) -> JsonValue:
    return json_of(response, "the sandbox")


def _message(response: Response) -> str:
    details = details_of(response)
    message = details.get("message") if isinstance(details, dict) else None
    return message if isinstance(message, str) else str(details or response.reason)
