"""The official SDKs (``pyairtable``, ``webflow``) and publishd's connectors, side by side.

``python -m bench.sdk [--records N]`` (needs the ``bench`` extra: ``pip install -e '.[bench]'``;
no database). Issue #15: "where the official SDKs fit the async batched engine,
use them; where they do not, say why with a measurement". Each case runs the
SDK with its default settings and then publishd's connector (built by
``build_connector``, as a run builds it) against the same local fake, each in
a fresh window of the fake's limit, and reads what the fake counted:

- ``airtable_create``: N records (200) created at the Airtable fake's 5
  requests/s per base, with its 30 s of refusals after an excess. pyairtable's
  ``batch_create`` (chunks of 10, one after another, urllib3 retrying 429s),
  pyairtable again paced by the caller (one request per 0.21 s), and
  ``AirtableConnector.create_many`` in batches of 10 sent together through the
  shared rate limiter, as the run engine sends them;
- ``webflow_lost_create``: one create whose write is applied and whose answer
  is lost (502). The SDK's ``create_item`` retries it by itself; the connector
  looks the item up by slug before sending it again;
- ``webflow_conflict``: deleting an item that another item still references
  (409 ``conflict``). The SDK retries 409s; the connector reports the conflict;
- ``webflow_multi_create``: the SDK's multi-item create (``create_item`` and
  ``create_item_live`` with ``MultipleItems``) against the ``{"items": [...]}``
  answer of ``POST /items`` (CONNECTORS.md): whether it returns the items'
  ids, next to ``WebflowConnector.create_many``.

Wall times include the SDKs' own back-off sleeps. Figures are the fakes':
requests they received, 429s they sent, records they hold afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from application.connector import Record
from bench.common import print_result
from bench.services import Airtable, Rate, Service, Webflow
from infrastructure.connectors.factory import build_connector
from infrastructure.connectors.rate_limit import RateLimiters

try:
    import pyairtable
    import webflow
    from webflow.environment import WebflowEnvironment
    from webflow.resources.collections.resources.items import (
        ItemsDeleteItemsRequestItemsItem,
        MultipleItems,
        MultipleLiveItems,
    )
    from webflow.types import (
        CollectionItem,
        CollectionItemFieldData,
        CollectionItemPostSingle,
        CollectionItemPostSingleFieldData,
    )
except ImportError as exc:  # pragma: no cover - the message is the point
    raise SystemExit(f"bench.sdk needs the bench extra: pip install -e '.[bench]' ({exc})") from exc

AIRTABLE_RATE = Rate(5, 1.0)
CALLER_PACE_S = 0.21
"""pyairtable paced by its caller: a request every 0.21 s stays under 5 a second."""


def _stats(svc: Service) -> dict[str, int]:
    raw = svc.admin.get("/_admin/stats").raise_for_status().json()
    return {k: int(v) for k, v in raw.items()}


@contextmanager
def _measured(svc: Service, figures: dict[str, Any]) -> Iterator[None]:
    """Zero the fake's counts, time the block, then record requests and 429s into figures."""
    svc.reset_stats()
    started = time.monotonic()
    try:
        yield
    finally:
        figures["wall_s"] = round(time.monotonic() - started, 2)
        stats = _stats(svc)
        figures["requests"] = stats.get("requests", 0)
        figures["responses_429"] = stats.get("rate_limited", 0)


def _error(exc: BaseException) -> str:
    """The exception's class and what it says, without the SDKs' dumps of headers and bodies."""
    status = getattr(exc, "status_code", None)
    if status is not None:  # webflow's ApiError: the status and Webflow's error code
        body = getattr(exc, "body", None)
        code = body.get("code") if isinstance(body, dict) else None
        return f"{type(exc).__name__} ({status}{f' {code}' if code else ''})"
    reason = re.search(r"ResponseError\('([^']*)'", str(exc))  # urllib3's, through requests
    return f"{type(exc).__name__}: {reason.group(1) if reason else str(exc)[:120]}"


def _connector(config: dict[str, Any]) -> Any:
    return build_connector(config, concurrency=8, limiters=RateLimiters(), environ=os.environ)


# -- Airtable ------------------------------------------------------------------------------


def _records(prefix: str, n: int) -> list[dict[str, Any]]:
    return [{"name": f"{prefix} {i}", "slug": f"{prefix}-{i}"} for i in range(n)]


def _airtable_created(svc: Airtable, prefix: str) -> int:
    rows = svc.admin.get("/_admin/tables/Authors").raise_for_status().json()["records"]
    return sum(1 for row in rows if str(row["fields"].get("slug", "")).startswith(f"{prefix}-"))


def airtable_sdk(svc: Airtable, n: int, *, paced: bool) -> dict[str, Any]:
    prefix = "sdk-paced" if paced else "sdk"
    figures: dict[str, Any] = {"client": "pyairtable" + (" + caller pacing" if paced else "")}
    svc.limit(True)  # a fresh window, no penalty left from the case before
    table = pyairtable.Api(svc.token, endpoint_url=svc.url).table(svc.base_id, "Authors")
    records = _records(prefix, n)
    with _measured(svc, figures):
        try:
            if paced:
                for start in range(0, n, 10):
                    sent = time.monotonic()
                    table.batch_create(records[start : start + 10])
                    time.sleep(max(0.0, CALLER_PACE_S - (time.monotonic() - sent)))
            else:
                table.batch_create(records)
            figures["error"] = None
        except Exception as exc:  # the measured outcome: how the SDK gives up
            figures["error"] = _error(exc)
    figures["created"] = _airtable_created(svc, prefix)
    figures["finished"] = figures["error"] is None and figures["created"] == n
    return figures


def airtable_connector(svc: Airtable, n: int) -> dict[str, Any]:
    figures: dict[str, Any] = {"client": "publishd AirtableConnector"}
    svc.limit(True)
    records = _records("publishd", n)

    async def publish() -> None:
        connector = _connector(svc.connector(setup=False))
        try:
            batches = [records[i : i + 10] for i in range(0, n, 10)]
            await asyncio.gather(
                *(connector.create_many("authors", b, f"bench-{i}") for i, b in enumerate(batches))
            )
        finally:
            await connector.aclose()

    with _measured(svc, figures):
        try:
            asyncio.run(publish())
            figures["error"] = None
        except Exception as exc:
            figures["error"] = _error(exc)
    figures["created"] = _airtable_created(svc, "publishd")
    figures["finished"] = figures["error"] is None and figures["created"] == n
    return figures


# -- Webflow -------------------------------------------------------------------------------


@contextmanager
def _webflow_client(svc: Webflow) -> Iterator[webflow.Webflow]:
    base = f"{svc.url}/v2"
    environment = WebflowEnvironment(base=base, data_api=base, content_delivery_api=base)
    with httpx.Client(timeout=30) as http:
        yield webflow.Webflow(environment=environment, access_token=svc.token, httpx_client=http)


def _faults(svc: Webflow, **faults: Any) -> None:
    svc.admin.put("/_admin/faults", json={"rate_limit": None, **faults}).raise_for_status()


def _items(svc: Webflow, folder: str) -> list[dict[str, Any]]:
    cid = svc.collections[folder]
    headers = {"Authorization": f"Bearer {svc.token}"}
    found: list[dict[str, Any]] = []
    while True:
        answer = svc.admin.get(
            f"/v2/collections/{cid}/items",
            params={"offset": len(found), "limit": 100},
            headers=headers,
        )
        page = answer.raise_for_status().json()
        found.extend(page["items"])
        if not page["items"] or len(found) >= int(page["pagination"]["total"]):
            return found


def _with_slug(svc: Webflow, slug: str) -> int:
    return sum(1 for item in _items(svc, "authors") if item["fieldData"].get("slug") == slug)


def _staged(svc: Webflow) -> dict[str, Any]:
    return {**svc.connector(setup=True), "live": False}


def webflow_lost_create(svc: Webflow) -> list[dict[str, Any]]:
    sdk: dict[str, Any] = {"client": "webflow SDK create_item"}
    _faults(svc, lose_next_writes=1)
    with _webflow_client(svc) as client, _measured(svc, sdk):
        try:
            item = client.collections.items.create_item(
                svc.collections["authors"],
                request=CollectionItemPostSingle(
                    field_data=CollectionItemPostSingleFieldData(name="Lost", slug="sdk-lost")
                ),
            )
            sdk["error"], sdk["id_returned"] = None, bool(getattr(item, "id", None))
        except Exception as exc:
            sdk["error"], sdk["id_returned"] = _error(exc), False
    sdk["resent_creates_refused"] = _stats(svc).get("duplicates", 0)
    sdk["items_with_slug"] = _with_slug(svc, "sdk-lost")

    ours: dict[str, Any] = {"client": "publishd WebflowConnector"}
    _faults(svc, lose_next_writes=1)

    async def create() -> Any:
        connector = _connector(_staged(svc))
        try:
            fields = {"name": "Lost", "slug": "publishd-lost"}
            return await connector.create_many("authors", [fields], "bench-lost")
        finally:
            await connector.aclose()

    with _measured(svc, ours):
        try:
            (outcome,) = asyncio.run(create())
            ours["error"], ours["id_returned"] = None, isinstance(outcome, Record)
        except Exception as exc:
            ours["error"], ours["id_returned"] = _error(exc), False
    ours["resent_creates_refused"] = _stats(svc).get("duplicates", 0)
    ours["items_with_slug"] = _with_slug(svc, "publishd-lost")
    return [sdk, ours]


def webflow_conflict(svc: Webflow) -> list[dict[str, Any]]:
    """Delete author-0, which book-0 references: 409 ``conflict``, nothing deleted."""
    author = next(i["id"] for i in _items(svc, "authors") if i["fieldData"]["slug"] == "author-0")
    _faults(svc)
    sdk: dict[str, Any] = {"client": "webflow SDK delete_items"}
    with _webflow_client(svc) as client, _measured(svc, sdk):
        try:
            client.collections.items.delete_items(
                svc.collections["authors"], items=[ItemsDeleteItemsRequestItemsItem(id=author)]
            )
            sdk["error"] = None
        except Exception as exc:
            sdk["error"] = _error(exc)

    ours: dict[str, Any] = {"client": "publishd WebflowConnector"}

    async def delete() -> None:
        connector = _connector(_staged(svc))
        try:
            await connector.delete_many("authors", [author], "bench-conflict")
        finally:
            await connector.aclose()

    with _measured(svc, ours):
        try:
            asyncio.run(delete())
            ours["error"] = None
        except Exception as exc:
            ours["error"] = _error(exc)
    return [sdk, ours]


def webflow_multi_create(svc: Webflow, n: int = 10) -> list[dict[str, Any]]:
    _faults(svc)
    cid = svc.collections["authors"]
    results: list[dict[str, Any]] = []

    def sdk_case(name: str, call: Callable[[webflow.Webflow, list[Any]], Any], live: bool) -> None:
        prefix = f"sdk-multi-{'live' if live else 'staged'}"
        items: list[Any] = [
            CollectionItem(field_data=CollectionItemFieldData(name=f"M {i}", slug=f"{prefix}-{i}"))
            if live
            else CollectionItemPostSingle(
                field_data=CollectionItemPostSingleFieldData(name=f"M {i}", slug=f"{prefix}-{i}")
            )
            for i in range(n)
        ]
        figures: dict[str, Any] = {"client": name}
        with _webflow_client(svc) as client, _measured(svc, figures):
            try:
                answer = call(client, items)
                ids = [answer.id] if getattr(answer, "id", None) else []
                figures["error"] = None
            except Exception as exc:
                ids, figures["error"] = [], _error(exc)
        figures["ids_returned"] = len(ids)
        figures["items_created"] = sum(
            1 for i in _items(svc, "authors") if i["fieldData"]["slug"].startswith(f"{prefix}-")
        )
        results.append(figures)

    sdk_case(
        "webflow SDK create_item(MultipleItems)",
        lambda c, items: c.collections.items.create_item(cid, request=MultipleItems(items=items)),
        live=False,
    )
    sdk_case(
        "webflow SDK create_item_live(MultipleLiveItems)",
        lambda c, items: c.collections.items.create_item_live(
            cid, request=MultipleLiveItems(items=items)
        ),
        live=True,
    )

    ours: dict[str, Any] = {"client": "publishd WebflowConnector.create_many"}

    async def create() -> list[Any]:
        connector = _connector(_staged(svc))
        try:
            items = [{"name": f"M {i}", "slug": f"publishd-multi-{i}"} for i in range(n)]
            return list(await connector.create_many("authors", items, "bench-multi"))
        finally:
            await connector.aclose()

    with _measured(svc, ours):
        try:
            outcomes = asyncio.run(create())
            ours["error"] = None
        except Exception as exc:
            outcomes, ours["error"] = [], _error(exc)
    ours["ids_returned"] = sum(1 for o in outcomes if isinstance(o, Record) and o.id)
    ours["items_created"] = sum(
        1 for i in _items(svc, "authors") if i["fieldData"]["slug"].startswith("publishd-multi-")
    )
    results.append(ours)
    return results


# -- the run -------------------------------------------------------------------------------


def _show(case: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{case}")
    for row in rows:
        rest = ", ".join(f"{k}={v}" for k, v in row.items() if k != "client")
        print(f"  {row['client']:<48} {rest}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200, help="Airtable creates (200)")
    args = parser.parse_args()
    result: dict[str, Any] = {
        "versions": {
            "pyairtable": pyairtable.__version__,
            "webflow": _version("webflow"),
        }
    }

    airtable = Airtable(AIRTABLE_RATE)
    with airtable.running():
        airtable.seed(1, 0)
        result["airtable_create"] = [
            {"records": args.records, **airtable_sdk(airtable, args.records, paced=False)},
            {"records": args.records, **airtable_sdk(airtable, args.records, paced=True)},
            {"records": args.records, **airtable_connector(airtable, args.records)},
        ]
    _show(f"Airtable: create {args.records} records at {AIRTABLE_RATE}", result["airtable_create"])

    wf = Webflow(Rate(60, 60.0))
    with wf.running():
        wf.seed(1, 1)  # book-0 references author-0
        result["webflow_lost_create"] = webflow_lost_create(wf)
        result["webflow_conflict"] = webflow_conflict(wf)
        result["webflow_multi_create"] = webflow_multi_create(wf)
    _show("Webflow: a lost create (applied, answered 502)", result["webflow_lost_create"])
    _show("Webflow: delete a referenced item (409 conflict)", result["webflow_conflict"])
    _show("Webflow: multi-item create on /items and /items/live", result["webflow_multi_create"])
    targets = _targets(result, args.records)
    print()
    for name, met in targets.items():
        print(f"{'met   ' if met else 'MISSED'} {name}")
    print_result(**result, targets_met=all(targets.values()))
    if not all(targets.values()):
        sys.exit(1)


def _targets(result: dict[str, Any], n: int) -> dict[str, bool]:
    """What publishd's connectors must do in the same run (the SDKs' figures are reported)."""
    airtable, lost = result["airtable_create"][-1], result["webflow_lost_create"][-1]
    conflict, multi = result["webflow_conflict"][-1], result["webflow_multi_create"][-1]
    return {
        f"AirtableConnector: {n} created in {n // 10} requests, no 429": (
            airtable["finished"]
            and airtable["requests"] == -(-n // 10)
            and airtable["responses_429"] == 0
        ),
        "WebflowConnector: a lost create answered with its id, nothing sent twice": (
            lost["id_returned"] and lost["resent_creates_refused"] == 0
        ),
        "WebflowConnector: a 409 costs one request": conflict["requests"] == 1,
        "WebflowConnector: a multi-item create returns every id": (
            multi["ids_returned"] == multi["items_created"] > 0
        ),
    }


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    main()
