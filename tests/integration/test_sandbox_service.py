"""The sandbox CMS over real HTTP: every rule of API.md section 10 and every injected fault."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from infrastructure.sandbox.app import create_app
from infrastructure.sandbox.faults import FaultConfig
from tests.support.servers import running_server

SEED: dict[str, Any] = {
    "collections": {
        "authors": {
            "items": [
                {"id": "a1", "fieldData": {"name": "Ada"}},
                {"id": "a2", "fieldData": {"name": "Brian"}},
            ]
        },
        "tags": {"items": [{"id": "t1", "fieldData": {"label": "x"}}]},
        "books": {
            "referenceFields": {
                "author": {"target": "authors", "multiple": False},
                "tags": {"target": "tags", "multiple": True},
            },
            "items": [{"id": "b1", "fieldData": {"title": "T", "author": "a1", "tags": ["t1"]}}],
        },
    }
}


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with running_server(create_app(SEED)) as url, httpx.Client(base_url=url) as http:
        yield http


def total(client: httpx.Client, collection: str) -> int:
    response = client.get(f"/collections/{collection}/items")
    assert response.status_code == 200
    return int(response.json()["total"])


def faults(client: httpx.Client, **options: Any) -> None:
    assert client.put("/_admin/faults", json=options).status_code == 200


def stats(client: httpx.Client) -> dict[str, Any]:
    return dict(client.get("/_admin/stats").json())


def delete(client: httpx.Client, collection: str, ids: list[str], **kw: Any) -> httpx.Response:
    return client.request("DELETE", f"/collections/{collection}/items", json={"items": ids}, **kw)


def iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- collections -----------------------------------------------------------------


def test_collections_lists_names_and_totals(client: httpx.Client) -> None:
    body = client.get("/collections").json()
    assert body == {
        "collections": [
            {"name": "authors", "total": 2},
            {"name": "tags", "total": 1},
            {"name": "books", "total": 1},
        ]
    }


def test_put_collection_accepts_slashes_and_targets_defined_later(client: httpx.Client) -> None:
    menus = {"referenceFields": {"page": {"target": "site1/pages", "multiple": False}}}
    assert client.put("/collections/site1/menus", json=menus).status_code == 200
    rejected = client.post("/collections/site1/menus/items", json={"fieldData": {"page": "p"}})
    assert rejected.status_code == 400

    assert client.put("/collections/site1/pages", json={"referenceFields": {}}).status_code == 200
    page = client.post("/collections/site1/pages/items", json={"fieldData": {"t": 1}}).json()
    menu = client.post("/collections/site1/menus/items", json={"fieldData": {"page": page["id"]}})
    assert menu.status_code == 201
    assert menu.json()["cdnUrl"].endswith(f"/site1/menus/{menu.json()['id']}")
    names = {c["name"]: c["total"] for c in client.get("/collections").json()["collections"]}
    assert names["site1/menus"] == 1 and names["site1/pages"] == 1
    assert delete(client, "site1/pages", [page["id"]]).status_code == 409


def test_redefining_a_collection_reindexes_its_references(client: httpx.Client) -> None:
    assert delete(client, "authors", ["a1"]).status_code == 409
    assert client.put("/collections/books", json={"referenceFields": {}}).status_code == 200
    assert delete(client, "authors", ["a1"]).status_code == 204
    assert total(client, "books") == 1


@pytest.mark.parametrize("name", ["bad%20name", "a/items", "x/items/y"])
def test_put_collection_rejects_unroutable_names(client: httpx.Client, name: str) -> None:
    response = client.put(f"/collections/{name}", json={"referenceFields": {}})
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_what_json_does_not_allow_is_a_400_not_a_500(client: httpx.Client, constant: str) -> None:
    body = f'{{"fieldData": {{"a": {constant}}}}}'.encode()
    headers = {"content-type": "application/json"}

    response = client.post("/collections/authors/items", content=body, headers=headers)

    assert response.status_code == 400, response.text
    assert response.json()["code"] == "validation_error"
    assert constant.lstrip("-") in response.json()["message"]
    assert total(client, "authors") == 2


def test_seed_targets_must_exist() -> None:
    seed = {"collections": {"books": {"referenceFields": {"author": {"target": "authors"}}}}}
    with pytest.raises(ValueError, match=r"books\.author targets undefined 'authors'"):
        create_app(seed)


def test_seed_references_must_resolve() -> None:
    seed = {
        "collections": {
            "authors": {},
            "books": {
                "referenceFields": {"author": {"target": "authors"}},
                "items": [{"id": "b1", "fieldData": {"author": "nobody"}}],
            },
        }
    }
    with pytest.raises(ValueError, match="missing authors"):
        create_app(seed)


# -- items -------------------------------------------------------------------------


def test_create_assigns_id_and_computed_fields(client: httpx.Client) -> None:
    response = client.post("/collections/authors/items", json={"fieldData": {"name": "Cy"}})
    assert response.status_code == 201
    item = response.json()
    assert re.fullmatch(r"[0-9a-f]{24}", item["id"])
    assert item["fieldData"] == {"name": "Cy"}
    assert iso(item["createdOn"]) == iso(item["lastUpdated"])
    assert item["cdnUrl"] == f"https://cdn.sandbox.local/authors/{item['id']}"
    other = client.post("/collections/authors/items", json={"fieldData": {"name": "Di"}}).json()
    assert other["id"] != item["id"]


def test_listing_is_paged_in_creation_order(client: httpx.Client) -> None:
    created = [
        client.post("/collections/tags/items", json={"fieldData": {"n": n}}).json()["id"]
        for n in range(5)
    ]
    ids = ["t1", *created]
    first = client.get("/collections/tags/items", params={"offset": 0, "limit": 4}).json()
    second = client.get("/collections/tags/items", params={"offset": 4, "limit": 4}).json()
    assert first["total"] == second["total"] == 6
    assert [i["id"] for i in first["items"]] + [i["id"] for i in second["items"]] == ids
    assert set(first["items"][0]) == {"id", "fieldData", "createdOn", "lastUpdated", "cdnUrl"}


@pytest.mark.parametrize("params", [{"limit": 101}, {"limit": 0}, {"offset": -1}, {"limit": "x"}])
def test_listing_rejects_bad_paging(client: httpx.Client, params: dict[str, Any]) -> None:
    assert client.get("/collections/tags/items", params=params).status_code == 400


def test_patch_merges_fields_and_null_clears(client: httpx.Client) -> None:
    before = client.get("/collections/books/items").json()["items"][0]
    response = client.patch(
        "/collections/books/items/b1", json={"fieldData": {"title": "New", "author": None}}
    )
    assert response.status_code == 200
    after = response.json()
    assert after["fieldData"] == {"title": "New", "author": None, "tags": ["t1"]}
    assert after["createdOn"] == before["createdOn"]
    assert iso(after["lastUpdated"]) >= iso(before["lastUpdated"])
    assert client.get("/collections/books/items").json()["items"][0] == after
    assert delete(client, "authors", ["a1"]).status_code == 204


def test_patch_unknown_item_is_404(client: httpx.Client) -> None:
    response = client.patch("/collections/books/items/nope", json={"fieldData": {"title": "x"}})
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize(
    "field_data",
    [
        {"author": "missing"},
        {"tags": ["t1", "missing"]},
        {"author": ["a1"]},
        {"tags": "t1"},
    ],
)
def test_references_to_missing_items_are_400(
    client: httpx.Client, field_data: dict[str, Any]
) -> None:
    created = client.post("/collections/books/items", json={"fieldData": field_data})
    patched = client.patch("/collections/books/items/b1", json={"fieldData": field_data})
    for response in (created, patched):
        assert response.status_code == 400
        assert response.json()["code"] == "validation_error"
        assert response.json()["message"]
    assert total(client, "books") == 1
    assert client.get("/collections/books/items").json()["items"][0]["fieldData"]["author"] == "a1"


@pytest.mark.parametrize("body", [{"fieldData": [1]}, {"fieldData": "x"}, {}, [1]])
def test_non_object_field_data_is_400(client: httpx.Client, body: Any) -> None:
    response = client.post("/collections/authors/items", json=body)
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"


def test_malformed_json_is_400(client: httpx.Client) -> None:
    response = client.post("/collections/authors/items", content=b"{not json")
    assert response.status_code == 400


def test_writes_to_undefined_collections_are_404(client: httpx.Client) -> None:
    body = {"fieldData": {"x": 1}}
    assert client.post("/collections/ghosts/items", json=body).status_code == 404
    assert client.patch("/collections/ghosts/items/g1", json=body).status_code == 404
    assert delete(client, "ghosts", ["g1"]).status_code == 404
    assert client.get("/collections/ghosts/items").status_code == 404


# -- deletes -------------------------------------------------------------------------


def test_delete_removes_items(client: httpx.Client) -> None:
    assert delete(client, "books", ["b1"]).status_code == 204
    assert delete(client, "authors", ["a1", "a2"]).status_code == 204
    assert total(client, "authors") == 0 and total(client, "books") == 0


def test_delete_of_referenced_item_is_409_and_deletes_nothing(client: httpx.Client) -> None:
    second = {"fieldData": {"title": "U", "tags": ["t1"], "author": "a1"}}
    b2 = client.post("/collections/books/items", json=second).json()["id"]
    response = delete(client, "authors", ["a2", "a1"])
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "conflict"
    assert body["conflicts"] == [
        {
            "id": "a1",
            "referencedBy": sorted(
                [{"collection": "books", "id": "b1"}, {"collection": "books", "id": b2}],
                key=lambda r: r["id"],
            ),
        }
    ]
    assert total(client, "authors") == 2
    assert delete(client, "tags", ["t1"]).json()["conflicts"][0]["id"] == "t1"


def test_referrers_deleted_in_the_same_batch_do_not_count(client: httpx.Client) -> None:
    tree = {"referenceFields": {"parent": {"target": "pages", "multiple": False}}}
    client.put("/collections/pages", json=tree)
    root = client.post("/collections/pages/items", json={"fieldData": {}}).json()["id"]
    child_body = {"fieldData": {"parent": root}}
    child = client.post("/collections/pages/items", json=child_body).json()["id"]
    assert delete(client, "pages", [root]).status_code == 409
    assert delete(client, "pages", [root, child]).status_code == 204
    assert total(client, "pages") == 0


def test_delete_of_more_than_100_items_is_400(client: httpx.Client) -> None:
    response = delete(client, "authors", ["a1"] + [f"x{i}" for i in range(100)])
    assert response.status_code == 400
    assert total(client, "authors") == 2


def test_delete_with_unknown_ids_is_404_and_deletes_nothing(client: httpx.Client) -> None:
    response = delete(client, "authors", ["a2", "nope"])
    assert response.status_code == 404
    assert response.json()["missing"] == ["nope"]
    assert total(client, "authors") == 2


# -- idempotency -----------------------------------------------------------------------


def test_idempotency_key_replays_create(client: httpx.Client) -> None:
    headers = {"Idempotency-Key": "create-1"}
    first = client.post("/collections/authors/items", json={"fieldData": {}}, headers=headers)
    again = client.post("/collections/authors/items", json={"fieldData": {}}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert total(client, "authors") == 3
    assert stats(client)["creates"] == 1 and stats(client)["duplicates"] == 1


def test_idempotency_key_replays_patch_and_delete(client: httpx.Client) -> None:
    headers = {"Idempotency-Key": "k"}
    first = client.patch(
        "/collections/authors/items/a2", json={"fieldData": {"n": 1}}, headers=headers
    )
    again = client.patch(
        "/collections/authors/items/a2", json={"fieldData": {"n": 2}}, headers=headers
    )
    assert again.json() == first.json() and again.json()["fieldData"]["n"] == 1
    assert delete(client, "authors", ["a2"], headers=headers).status_code == 204
    assert delete(client, "authors", ["a2"], headers=headers).status_code == 204
    assert delete(client, "authors", ["a2"]).status_code == 404


def test_refused_writes_are_not_replayed(client: httpx.Client) -> None:
    headers = {"Idempotency-Key": "early"}
    body = {"fieldData": {"x": 1}}
    assert client.post("/collections/later/items", json=body, headers=headers).status_code == 404
    client.put("/collections/later", json={"referenceFields": {}})
    assert client.post("/collections/later/items", json=body, headers=headers).status_code == 201


def test_concurrent_requests_with_one_key_create_one_record(client: httpx.Client) -> None:
    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=str(client.base_url)) as http:
            return await asyncio.gather(
                *(
                    http.post(
                        "/collections/tags/items",
                        json={"fieldData": {}},
                        headers={"Idempotency-Key": "same"},
                    )
                    for _ in range(20)
                )
            )

    responses = asyncio.run(burst())
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert total(client, "tags") == 2


# -- faults --------------------------------------------------------------------------


def test_lost_response_applies_the_write(client: httpx.Client) -> None:
    faults(client, lost_response_rate=1.0)
    headers = {"Idempotency-Key": "lost"}
    lost = client.post("/collections/authors/items", json={"fieldData": {}}, headers=headers)
    assert lost.status_code == 502
    assert total(client, "authors") == 3
    faults(client)
    replay = client.post("/collections/authors/items", json={"fieldData": {}}, headers=headers)
    assert replay.status_code == 201
    assert total(client, "authors") == 3
    ids = [i["id"] for i in client.get("/collections/authors/items").json()["items"]]
    assert ids[-1] == replay.json()["id"]


def test_fail_rate_answers_503_without_applying(client: httpx.Client) -> None:
    faults(client, fail_rate=1.0)
    response = client.post("/collections/authors/items", json={"fieldData": {}})
    assert response.status_code == 503
    faults(client)
    assert total(client, "authors") == 2


def test_random_faults_are_reproducible_with_a_seed(client: httpx.Client) -> None:
    def statuses() -> list[int]:
        faults(client, fail_rate=0.5, seed=42)
        return [client.get("/collections").status_code for _ in range(30)]

    first = statuses()
    assert set(first) == {200, 503}
    assert statuses() == first


def test_injected_429_carries_retry_after(client: httpx.Client) -> None:
    faults(client, rate_limit_429_rate=1.0, retry_after_s=3)
    response = client.get("/collections")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert stats(client)["rate_limited"] == 1


def test_real_rate_limit_answers_429_once_the_window_is_full(client: httpx.Client) -> None:
    faults(client, rate_limit=2, rate_window_s=60)  # a window no slow machine outlasts
    statuses = [client.get("/collections").status_code for _ in range(4)]
    assert statuses == [200, 200, 429, 429]
    limited = client.get("/collections")
    assert limited.status_code == 429
    assert limited.json()["code"] == "too_many_requests"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert stats(client)["rate_limited"] == 3


def test_outage_fails_everything_until_turned_off(client: httpx.Client) -> None:
    faults(client, outage=True)
    assert client.get("/collections").status_code == 503
    assert client.post("/collections/authors/items", json={"fieldData": {}}).status_code == 503
    faults(client, outage=False)
    assert client.get("/collections").status_code == 200
    assert total(client, "authors") == 2


def test_auth_token_is_required_when_configured() -> None:
    app = create_app(SEED, FaultConfig(auth_token="s3cret"))
    with running_server(app) as url, httpx.Client(base_url=url) as http:
        assert http.get("/collections").status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert http.get("/collections", headers=wrong).status_code == 401
        right = {"Authorization": "Bearer s3cret"}
        assert http.get("/collections", headers=right).status_code == 200


def test_latency_delays_every_request(client: httpx.Client) -> None:
    faults(client, latency_ms=100)
    started = time.perf_counter()
    assert client.get("/collections").status_code == 200
    assert time.perf_counter() - started >= 0.1


def test_admin_rejects_unknown_or_bad_fault_options(client: httpx.Client) -> None:
    assert client.put("/_admin/faults", json={"nonsense": 1}).status_code == 400
    assert client.put("/_admin/faults", json={"fail_rate": 2}).status_code == 400


def test_stats_count_requests_creates_and_duplicates(client: httpx.Client) -> None:
    client.get("/collections")
    for _ in range(2):
        client.post(
            "/collections/tags/items", json={"fieldData": {}}, headers={"Idempotency-Key": "s"}
        )
    counted = stats(client)
    assert counted["requests"] == 3
    assert counted["creates"] == 1 and counted["duplicates"] == 1
    assert client.delete("/_admin/stats").status_code == 204
    assert stats(client).get("requests", 0) == 0
