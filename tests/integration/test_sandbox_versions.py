"""The sandbox over real HTTP: reading one item, conditional writes, versions, a shifting listing.

``lastUpdated`` is the version a client sends back as ``If-Match``, so a
conditional write must be refused (412, nothing written, nothing remembered
under its ``Idempotency-Key``) whenever the item changed, and the version must
change on every write, even two in one clock tick.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from infrastructure.sandbox.app import create_app
from tests.support.sandbox_side import SEED
from tests.support.servers import running_server

STOPPED = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with running_server(create_app(SEED)) as url, httpx.Client(base_url=url) as http:
        yield http


def item(client: httpx.Client, collection: str, item_id: str) -> dict[str, Any]:
    response = client.get(f"/collections/{collection}/items/{item_id}")
    assert response.status_code == 200
    return dict(response.json())


def patch(
    client: httpx.Client, item_id: str, fields: dict[str, Any], **headers: str
) -> httpx.Response:
    return client.patch(
        f"/collections/books/items/{item_id}",
        json={"fieldData": fields},
        headers={k.replace("_", "-"): v for k, v in headers.items()},
    )


def stats(client: httpx.Client) -> dict[str, Any]:
    return dict(client.get("/_admin/stats").json())


def faults(client: httpx.Client, **options: Any) -> httpx.Response:
    return client.put("/_admin/faults", json=options)


# -- reading one item ----------------------------------------------------------------------


def test_get_item_is_the_item_as_listed(client: httpx.Client) -> None:
    listed = client.get("/collections/books/items").json()["items"][0]
    assert item(client, "books", "b1") == listed
    assert listed["fieldData"] == {"title": "T", "author": "a1"}


def test_get_item_follows_writes(client: httpx.Client) -> None:
    updated = patch(client, "b1", {"title": "New"}).json()
    assert item(client, "books", "b1") == updated
    created = client.post("/collections/books/items", json={"fieldData": {"title": "U"}}).json()
    assert item(client, "books", created["id"]) == created


@pytest.mark.parametrize("path", ["/collections/books/items/nope", "/collections/ghosts/items/b1"])
def test_get_unknown_item_or_collection_is_404(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert response.json()["message"]


def test_get_item_in_a_collection_with_slashes(client: httpx.Client) -> None:
    assert client.put("/collections/site1/menus", json={}).status_code == 200
    menu = client.post("/collections/site1/menus/items", json={"fieldData": {"n": 1}}).json()
    assert item(client, "site1/menus", menu["id"]) == menu


# -- If-Match --------------------------------------------------------------------------------


def test_if_match_with_the_current_version_writes(client: httpx.Client) -> None:
    before = item(client, "books", "b1")
    response = patch(client, "b1", {"title": "New"}, If_Match=before["lastUpdated"])
    assert response.status_code == 200
    assert response.json()["fieldData"]["title"] == "New"
    assert response.json()["lastUpdated"] != before["lastUpdated"]
    assert item(client, "books", "b1") == response.json()


def test_if_match_with_an_older_version_is_412_and_writes_nothing(client: httpx.Client) -> None:
    seen = item(client, "books", "b1")["lastUpdated"]
    colleague = patch(client, "b1", {"title": "Colleague's"}).json()

    response = patch(client, "b1", {"title": "Mine", "author": None}, If_Match=seen)

    assert response.status_code == 412
    body = response.json()
    assert body["code"] == "precondition_failed"
    assert body["message"]
    assert body["lastUpdated"] == colleague["lastUpdated"]
    assert item(client, "books", "b1") == colleague
    assert stats(client)["updates"] == 1
    # nor was its author cleared: b1 still points at a1, which cannot go
    assert (
        client.request("DELETE", "/collections/authors/items", json={"items": ["a1"]}).status_code
        == 409
    )


def test_a_refused_conditional_write_is_not_remembered_under_its_key(
    client: httpx.Client,
) -> None:
    stale = item(client, "books", "b1")["lastUpdated"]
    current = patch(client, "b1", {"title": "Colleague's"}).json()["lastUpdated"]

    refused = patch(client, "b1", {"title": "Mine"}, If_Match=stale, Idempotency_Key="k")
    assert refused.status_code == 412
    retried = patch(client, "b1", {"title": "Mine"}, If_Match=current, Idempotency_Key="k")

    assert retried.status_code == 200
    assert retried.json()["fieldData"]["title"] == "Mine"
    assert item(client, "books", "b1") == retried.json()
    assert stats(client).get("duplicates", 0) == 0


def test_an_applied_conditional_write_replays_even_though_its_version_is_gone(
    client: httpx.Client,
) -> None:
    """A client whose answer was lost retries with the same key and ``If-Match``:
    the write applied, so it gets the first answer, not a 412 caused by itself."""
    version = item(client, "books", "b1")["lastUpdated"]
    assert faults(client, lost_response_rate=1.0).status_code == 200
    lost = patch(client, "b1", {"title": "Mine"}, If_Match=version, Idempotency_Key="k")
    assert lost.status_code == 502
    assert faults(client).status_code == 200

    retried = patch(client, "b1", {"title": "Mine"}, If_Match=version, Idempotency_Key="k")

    assert retried.status_code == 200
    assert retried.json() == item(client, "books", "b1")
    assert (stats(client)["updates"], stats(client)["duplicates"]) == (1, 1)


def test_concurrent_conditional_writes_of_one_version_one_wins(client: httpx.Client) -> None:
    version = item(client, "books", "b1")["lastUpdated"]

    async def race() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=str(client.base_url)) as http:
            return await asyncio.gather(
                *(
                    http.patch(
                        "/collections/books/items/b1",
                        json={"fieldData": {"title": f"writer {n}"}},
                        headers={"If-Match": version},
                    )
                    for n in range(10)
                )
            )

    responses = asyncio.run(race())
    assert sorted(r.status_code for r in responses) == [200] + [412] * 9
    (winner,) = (r for r in responses if r.status_code == 200)
    assert item(client, "books", "b1") == winner.json()
    assert {r.json()["lastUpdated"] for r in responses if r.status_code == 412} == {
        winner.json()["lastUpdated"]
    }


# -- versions ---------------------------------------------------------------------------------


def test_every_write_in_one_clock_tick_gets_a_new_version() -> None:
    app = create_app(SEED, clock=lambda: STOPPED)
    with running_server(app) as url, httpx.Client(base_url=url) as http:
        created = http.post("/collections/books/items", json={"fieldData": {"n": 0}}).json()
        versions = [created["lastUpdated"]]
        for n in range(1, 6):
            response = http.patch(
                f"/collections/books/items/{created['id']}",
                json={"fieldData": {"n": n}},
                headers={"If-Match": versions[-1]},
            )
            assert response.status_code == 200
            versions.append(response.json()["lastUpdated"])
        other = http.post("/collections/books/items", json={"fieldData": {}}).json()
        stale = http.patch(
            f"/collections/books/items/{created['id']}",
            json={"fieldData": {"n": 99}},
            headers={"If-Match": versions[-2]},
        )
    assert len(set(versions)) == len(versions)
    assert other["lastUpdated"] not in versions
    assert stale.status_code == 412
    assert created["createdOn"] == created["lastUpdated"]


def test_a_seeded_version_ahead_of_the_clock_still_changes() -> None:
    """A copy from elsewhere may carry a version later than this sandbox's clock."""
    future = "2030-01-01T00:00:00.000001Z"  # a microsecond past STOPPED
    seed = {"collections": {"books": {"items": [{"id": "b1", "lastUpdated": future}]}}}
    app = create_app(seed, clock=lambda: STOPPED)
    with running_server(app) as url, httpx.Client(base_url=url) as http:
        assert http.get("/collections/books/items/b1").json()["lastUpdated"] == future
        response = http.patch(
            "/collections/books/items/b1",
            json={"fieldData": {"n": 1}},
            headers={"If-Match": future},
        )
    assert response.status_code == 200
    assert response.json()["lastUpdated"] != future
    assert response.json()["lastUpdated"] > future


# -- a delete in the middle of a paged listing -----------------------------------------------


def books(count: int) -> dict[str, Any]:
    items = [{"id": f"b{n:03}", "fieldData": {"n": n}} for n in range(count)]
    return {"collections": {"books": {"items": items}}}


def page_ids(http: httpx.Client, offset: int, limit: int = 100) -> list[str]:
    response = http.get("/collections/books/items", params={"offset": offset, "limit": limit})
    assert response.status_code == 200
    return [i["id"] for i in response.json()["items"]]


def test_a_delete_during_listing_shifts_the_next_page() -> None:
    every = [f"b{n:03}" for n in range(250)]
    with running_server(create_app(books(250))) as url, httpx.Client(base_url=url) as http:
        staged = {"delete_during_listing": {"collection": "books", "after_offset": 100}}
        assert (
            faults(http, **staged).json()["delete_during_listing"]
            == staged["delete_during_listing"]
        )
        first = page_ids(http, 0)
        rest = page_ids(http, 100) + page_ids(http, 200)
        afterwards = page_ids(http, 0) + page_ids(http, 100) + page_ids(http, 200)
        counted = stats(http)["deleted_during_listing"]

    assert first == every[:100]  # served whole, then b099 was deleted
    assert rest == every[101:]  # b100 moved to place 99: offset paging never lists it
    assert afterwards == every[:99] + every[100:]  # once: the second pass sees every live item
    assert counted == 1


def test_the_staged_delete_waits_for_its_offset_and_spares_referenced_items() -> None:
    seed = books(120)
    seed["collections"]["shelves"] = {
        "referenceFields": {"book": {"target": "books", "multiple": False}},
        "items": [{"id": "s1", "fieldData": {"book": "b099"}}],
    }
    with running_server(create_app(seed)) as url, httpx.Client(base_url=url) as http:
        faults(http, delete_during_listing={"collection": "books", "after_offset": 100})
        assert page_ids(http, 0, 50) == [f"b{n:03}" for n in range(50)]  # ends at 50: not yet
        shelves = http.get("/collections/shelves/items").json()["items"]  # another collection
        assert page_ids(http, 50, 50) == [f"b{n:03}" for n in range(50, 100)]
        left = page_ids(http, 0) + page_ids(http, 100)
    assert len(shelves) == 1
    assert left == [f"b{n:03}" for n in range(120) if n != 98]  # b099 is referenced


@pytest.mark.parametrize(
    "staged",
    [
        "books",
        {"after_offset": 1},
        {"collection": "", "after_offset": 1},
        {"collection": "books", "after_offset": -1},
        {"collection": "books", "after_offset": True},
        {"collection": "books", "after_offset": 1, "extra": 1},
    ],
)
def test_a_malformed_staged_delete_is_400(client: httpx.Client, staged: Any) -> None:
    response = faults(client, delete_during_listing=staged)
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert client.get("/_admin/faults").json()["delete_during_listing"] is None
