"""The sandbox's bulk writes and its real rate limit over real HTTP (API.md section 10).

A bulk request is all or nothing: every refusal below is checked against the
store's state afterwards (totals, items unchanged), not only against the
status. The rate limit runs on a clock the test moves by hand, so the window's
edges are exact and no test sleeps.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from infrastructure.sandbox.app import create_app
from infrastructure.sandbox.faults import FaultConfig
from infrastructure.sandbox.server import parse_rate
from tests.support.servers import running_server

SEED: dict[str, Any] = {
    "collections": {
        "authors": {
            "items": [
                {"id": "a1", "fieldData": {"name": "Ada"}},
                {"id": "a2", "fieldData": {"name": "Brian"}},
            ]
        },
        "books": {
            "referenceFields": {"author": {"target": "authors", "multiple": False}},
            "items": [
                {"id": "b1", "fieldData": {"title": "One", "author": "a1"}},
                {"id": "b2", "fieldData": {"title": "Two", "author": "a1"}},
                {"id": "b3", "fieldData": {"title": "Three", "author": "a2"}},
            ],
        },
    }
}


class Clock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with running_server(create_app(SEED)) as url, httpx.Client(base_url=url) as http:
        yield http


@contextlib.contextmanager
def limited(limit: float, window_s: float = 1.0) -> Iterator[tuple[httpx.Client, Clock]]:
    """A sandbox limited to ``limit`` requests per ``window_s``, on a hand-moved clock."""
    clock = Clock()
    config = FaultConfig(rate_limit=limit, rate_window_s=window_s)
    app = create_app(SEED, config, fault_clock=clock)
    with running_server(app) as url, httpx.Client(base_url=url) as http:
        yield http, clock


def items(client: httpx.Client, collection: str) -> list[dict[str, Any]]:
    response = client.get(f"/collections/{collection}/items")
    assert response.status_code == 200
    return list(response.json()["items"])


def stats(client: httpx.Client) -> dict[str, Any]:
    return dict(client.get("/_admin/stats").json())


def create(client: httpx.Client, collection: str, entries: list[Any], **kw: Any) -> httpx.Response:
    return client.post(f"/collections/{collection}/items", json={"items": entries}, **kw)


def update(client: httpx.Client, collection: str, entries: list[Any], **kw: Any) -> httpx.Response:
    return client.patch(f"/collections/{collection}/items", json={"items": entries}, **kw)


def books(count: int) -> list[dict[str, Any]]:
    return [{"fieldData": {"title": f"Book {n}", "n": n, "author": "a2"}} for n in range(count)]


def iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def status_of(client: httpx.Client) -> tuple[int, str, str]:
    """One rate-limited request: its status and where it leaves the client."""
    response = client.get("/collections")
    return (
        response.status_code,
        response.headers["X-RateLimit-Limit"],
        response.headers["X-RateLimit-Remaining"],
    )


# -- bulk create -------------------------------------------------------------------------


def test_bulk_create_of_100_answers_every_item_in_request_order(client: httpx.Client) -> None:
    response = create(client, "books", books(100))

    assert response.status_code == 201, response.text
    created = response.json()["items"]
    assert [item["fieldData"]["n"] for item in created] == list(range(100))
    assert len({item["id"] for item in created}) == 100
    assert all(item["cdnUrl"].endswith(f"/books/{item['id']}") for item in created)
    listed = items(client, "books")
    assert [item["id"] for item in listed] == ["b1", "b2", "b3"] + [i["id"] for i in created[:97]]
    counted = stats(client)
    assert counted["creates"] == 100 and counted["bulk_creates"] == 1
    assert client.get(f"/collections/books/items/{created[99]['id']}").json() == created[99]


def test_bulk_create_of_101_is_400_and_creates_nothing(client: httpx.Client) -> None:
    response = create(client, "books", books(101))

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert "100" in response.json()["message"] and "index" not in response.json()
    assert len(items(client, "books")) == 3
    assert stats(client).get("creates", 0) == 0


@pytest.mark.parametrize("entries", [[], "x", {"fieldData": {}}, None])
def test_bulk_bodies_that_are_not_a_list_of_items_are_400(
    client: httpx.Client, entries: Any
) -> None:
    for response in (create(client, "books", entries), update(client, "books", entries)):
        assert response.status_code == 400
        assert response.json()["code"] == "validation_error"
        assert response.json()["message"] and "index" not in response.json()
    assert len(items(client, "books")) == 3


def test_an_item_that_is_not_an_object_is_named_by_its_index(client: httpx.Client) -> None:
    entries: list[Any] = [*books(2), "oops", *books(2)]
    for response in (create(client, "books", entries), update(client, "books", entries)):
        assert response.status_code == 400
        assert response.json()["index"] == 2
        assert response.json()["message"].startswith("items[2]: ")
    assert len(items(client, "books")) == 3


@pytest.mark.parametrize(
    ("bad", "details"),
    [
        ({"fieldData": {"author": "nobody"}}, {"field": "author", "missing": ["nobody"]}),
        ({"fieldData": {"author": ["a1"]}}, {}),
        ({"fieldData": "not an object"}, {}),
        ({}, {}),
    ],
)
def test_a_bad_item_at_37_refuses_the_whole_bulk_create(
    client: httpx.Client, bad: dict[str, Any], details: dict[str, Any]
) -> None:
    entries = books(100)
    entries[37] = bad

    response = create(client, "books", entries)

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error" and body["index"] == 37
    assert body["message"].startswith("items[37]: ")
    assert {k: body[k] for k in details} == details
    assert len(items(client, "books")) == 3
    assert client.get("/collections").json()["collections"][1] == {"name": "books", "total": 3}
    assert stats(client).get("creates", 0) == 0


def test_a_body_with_field_data_stays_a_single_create(client: httpx.Client) -> None:
    body = {"fieldData": {"title": "Single"}, "items": books(3)}

    response = client.post("/collections/books/items", json=body)

    assert response.status_code == 201
    assert response.json()["fieldData"] == {"title": "Single"}
    assert len(items(client, "books")) == 4
    assert stats(client).get("bulk_creates", 0) == 0


def test_items_of_one_bulk_create_may_reference_only_existing_items(client: httpx.Client) -> None:
    tree = {"referenceFields": {"parent": {"target": "pages", "multiple": False}}}
    assert client.put("/collections/pages", json=tree).status_code == 200
    root = create(client, "pages", [{"fieldData": {}}]).json()["items"][0]["id"]
    children = [{"fieldData": {"parent": root}}, {"fieldData": {"parent": "not-yet"}}]

    refused = create(client, "pages", children)

    assert refused.status_code == 400 and refused.json()["index"] == 1
    assert refused.json()["missing"] == ["not-yet"]
    assert [item["id"] for item in items(client, "pages")] == [root]
    assert create(client, "pages", children[:1]).status_code == 201


def test_bulk_create_in_an_undefined_collection_is_404(client: httpx.Client) -> None:
    response = create(client, "ghosts", books(2))
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


# -- bulk update ------------------------------------------------------------------------


def test_bulk_update_merges_each_item_with_a_fresh_version(client: httpx.Client) -> None:
    before = {item["id"]: item for item in items(client, "books")}
    changes = [
        {"id": "b3", "fieldData": {"title": "Three!", "author": None}},
        {"id": "b1", "fieldData": {"pages": 10}, "ifMatch": before["b1"]["lastUpdated"]},
    ]

    response = update(client, "books", changes)

    assert response.status_code == 200, response.text
    b3, b1 = response.json()["items"]
    assert b3["fieldData"] == {"title": "Three!", "author": None}
    assert b1["fieldData"] == {"title": "One", "author": "a1", "pages": 10}
    assert b1["createdOn"] == before["b1"]["createdOn"]
    stamps = [iso(b3["lastUpdated"]), iso(b1["lastUpdated"])]
    assert stamps[0] < stamps[1]
    assert all(iso(before[i]["lastUpdated"]) < s for i, s in zip(("b3", "b1"), stamps, strict=True))
    assert {item["id"]: item for item in items(client, "books")} == {
        **before,
        "b1": b1,
        "b3": b3,
    }
    counted = stats(client)
    assert counted["updates"] == 2 and counted["bulk_updates"] == 1
    assert client.request("DELETE", "/collections/authors/items", json={"items": ["a2"]}).is_success


def test_a_stale_if_match_is_412_with_the_index_and_applies_nothing(client: httpx.Client) -> None:
    before = items(client, "books")
    current = before[1]["lastUpdated"]
    stale = client.patch("/collections/books/items/b2", json={"fieldData": {"title": "Theirs"}})
    assert stale.status_code == 200
    changes = [
        {"id": "b1", "fieldData": {"title": "Mine 1"}},
        {"id": "b2", "fieldData": {"title": "Mine 2"}, "ifMatch": current},
        {"id": "b3", "fieldData": {"title": "Mine 3"}},
    ]

    response = update(client, "books", changes)

    assert response.status_code == 412
    body = response.json()
    assert body["code"] == "precondition_failed" and body["index"] == 1
    assert body["lastUpdated"] == stale.json()["lastUpdated"]
    assert body["message"].startswith("items[1]: ")
    assert items(client, "books") == [before[0], stale.json(), before[2]]
    assert stats(client)["updates"] == 1 and stats(client).get("bulk_updates", 0) == 0


def test_an_unknown_id_is_404_with_the_index_and_applies_nothing(client: httpx.Client) -> None:
    before = items(client, "books")
    changes = [{"id": "b1", "fieldData": {"title": "x"}}, {"id": "nope", "fieldData": {}}]

    response = update(client, "books", changes)

    assert response.status_code == 404
    assert response.json()["code"] == "not_found" and response.json()["index"] == 1
    assert "nope" in response.json()["message"]
    assert items(client, "books") == before


def test_an_id_given_twice_is_400_at_the_repeat(client: httpx.Client) -> None:
    before = items(client, "books")
    changes = [
        {"id": "b1", "fieldData": {"title": "x"}},
        {"id": "b2", "fieldData": {"title": "y"}},
        {"id": "b1", "fieldData": {"title": "z"}},
    ]

    response = update(client, "books", changes)

    assert response.status_code == 400
    assert response.json()["index"] == 2 and response.json()["id"] == "b1"
    assert items(client, "books") == before


@pytest.mark.parametrize(
    "bad",
    [
        {"id": "b2", "fieldData": {"author": "nobody"}},
        {"id": "b2", "fieldData": [1]},
        {"id": "b2"},
        {"id": 7, "fieldData": {}},
        {"id": "b2", "fieldData": {}, "ifMatch": 5},
    ],
)
def test_invalid_update_items_are_400_with_the_index_and_apply_nothing(
    client: httpx.Client, bad: dict[str, Any]
) -> None:
    before = items(client, "books")
    changes = [{"id": "b1", "fieldData": {"title": "x"}}, bad]

    response = update(client, "books", changes)

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error" and response.json()["index"] == 1
    assert items(client, "books") == before


def test_bulk_update_of_100_items(client: httpx.Client) -> None:
    created = create(client, "books", books(100)).json()["items"]
    changes = [{"id": item["id"], "fieldData": {"n": -item["fieldData"]["n"]}} for item in created]

    response = update(client, "books", changes)

    assert response.status_code == 200
    assert [item["fieldData"]["n"] for item in response.json()["items"]] == [-n for n in range(100)]
    assert update(client, "books", [*changes, changes[0]]).status_code == 400


# -- idempotency and lost responses -------------------------------------------------------


def test_a_bulk_create_replays_its_whole_answer_for_the_same_key(client: httpx.Client) -> None:
    headers = {"Idempotency-Key": "bulk-1"}

    first = create(client, "books", books(5), headers=headers)
    again = create(client, "books", books(5), headers=headers)

    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert len(items(client, "books")) == 8
    counted = stats(client)
    assert counted["duplicates"] == 1
    assert counted["creates"] == 5 and counted["bulk_creates"] == 1


def test_a_bulk_update_replays_for_the_same_key(client: httpx.Client) -> None:
    headers = {"Idempotency-Key": "bulk-u"}
    first = update(client, "books", [{"id": "b1", "fieldData": {"n": 1}}], headers=headers)
    again = update(client, "books", [{"id": "b1", "fieldData": {"n": 2}}], headers=headers)

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert items(client, "books")[0]["fieldData"]["n"] == 1
    assert stats(client)["updates"] == 1 and stats(client)["duplicates"] == 1


def test_a_lost_bulk_create_retried_with_its_key_creates_the_items_once(
    client: httpx.Client,
) -> None:
    assert client.put("/_admin/faults", json={"lost_response_rate": 1.0}).status_code == 200
    headers = {"Idempotency-Key": "lost-bulk"}

    lost = create(client, "books", books(10), headers=headers)
    assert lost.status_code == 502
    assert len(items(client, "books")) == 13
    assert client.put("/_admin/faults", json={}).status_code == 200
    retried = create(client, "books", books(10), headers=headers)

    assert retried.status_code == 201
    listed = items(client, "books")
    assert len(listed) == 13
    assert [item["id"] for item in listed[3:]] == [item["id"] for item in retried.json()["items"]]
    counted = stats(client)
    assert counted["lost_responses"] == 1 and counted["duplicates"] == 1
    assert counted["creates"] == 10 and counted["bulk_creates"] == 1


# -- the real rate limit ------------------------------------------------------------------


def test_five_per_second_accepts_five_then_answers_429() -> None:
    with limited(5) as (client, _clock):
        accepted = [status_of(client) for _ in range(5)]
        refused = client.get("/collections")

        assert accepted == [(200, "5", str(left)) for left in (4, 3, 2, 1, 0)]
        assert refused.status_code == 429
        assert refused.json()["code"] == "too_many_requests" and refused.json()["message"]
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.headers["X-RateLimit-Limit"] == "5"
        assert refused.headers["X-RateLimit-Remaining"] == "0"
        assert stats(client)["rate_limited"] == 1


def test_the_window_slides_and_refused_requests_take_no_place_in_it() -> None:
    with limited(5) as (client, clock):
        assert [status_of(client)[0] for _ in range(3)] == [200] * 3
        clock.now = 0.5
        assert [status_of(client)[0] for _ in range(2)] == [200] * 2
        clock.now = 0.75
        refused = [client.get("/collections") for _ in range(10)]
        assert {(r.status_code, r.headers["Retry-After"]) for r in refused} == {(429, "1")}

        clock.now = 1.0  # the three of t=0 leave; the two of t=0.5 and no 429 stay
        assert [status_of(client) for _ in range(4)] == [
            (200, "5", "2"),
            (200, "5", "1"),
            (200, "5", "0"),
            (429, "5", "0"),
        ]
        clock.now = 1.5
        assert status_of(client) == (200, "5", "1")


def test_retry_after_counts_whole_seconds_until_the_oldest_leaves_the_window() -> None:
    with limited(2, window_s=60) as (client, clock):
        assert [status_of(client)[0] for _ in range(2)] == [200, 200]
        clock.now = 10.25
        refused = client.get("/collections")
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "50"  # ceil(60 - 10.25)
        clock.now = 59.9
        assert client.get("/collections").headers["Retry-After"] == "1"
        clock.now = 60.0  # both of t=0 leave together
        assert status_of(client) == (200, "2", "1")


def test_a_bulk_request_is_one_request_to_the_limit() -> None:
    with limited(2) as (client, _clock):
        response = create(client, "books", books(100))
        assert response.status_code == 201
        assert response.headers["X-RateLimit-Remaining"] == "1"
        assert client.get("/collections/books/items").json()["total"] == 103


def test_every_answer_carries_the_limit_headers_and_none_without_a_limit(
    client: httpx.Client,
) -> None:
    with limited(3) as (limited_client, _clock):
        missing = limited_client.get("/collections/books/items/nope")
        assert missing.status_code == 404
        assert missing.headers["X-RateLimit-Remaining"] == "2"
        refused = create(limited_client, "books", [])
        assert refused.status_code == 400
        assert refused.headers["X-RateLimit-Remaining"] == "1"
    assert "X-RateLimit-Limit" not in client.get("/collections").headers


def test_a_fractional_limit_keeps_its_rate_with_whole_requests() -> None:
    with limited(0.5) as (client, clock):  # one per two seconds
        assert status_of(client) == (200, "1", "0")
        clock.now = 1.0
        refused = client.get("/collections")
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
        clock.now = 2.0
        assert status_of(client)[0] == 200


def test_reconfiguring_faults_starts_a_fresh_window(client: httpx.Client) -> None:
    config = {"rate_limit": 1, "rate_window_s": 60}
    assert client.put("/_admin/faults", json=config).json()["rate_window_s"] == 60
    assert client.get("/collections").status_code == 200
    assert client.get("/collections").status_code == 429
    assert client.put("/_admin/faults", json=config).status_code == 200
    assert client.get("/collections").status_code == 200


@pytest.mark.parametrize("window", [0, -1, "60", True])
def test_the_window_must_be_a_positive_number(client: httpx.Client, window: Any) -> None:
    response = client.put("/_admin/faults", json={"rate_limit": 5, "rate_window_s": window})
    assert response.status_code == 400
    assert "rate_window_s" in response.json()["message"]
    with pytest.raises(ValueError, match="rate_window_s"):
        FaultConfig(rate_limit=5, rate_window_s=window).validate()


def test_fault_config_round_trips_the_window() -> None:
    config = FaultConfig(rate_limit=30, rate_window_s=60.0)
    assert FaultConfig.from_json(config.to_json()) == config


# -- --rate-limit ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("5/min", (5.0, 60.0)),
        ("90/MIN", (90.0, 60.0)),
        ("5/s", (5.0, 1.0)),
        (" 2.5 / s ", (2.5, 1.0)),
        ("50", (50.0, 1.0)),
        (50, (50.0, 1.0)),
        (None, (None, 1.0)),
    ],
)
def test_parse_rate_reads_per_second_and_per_minute(text: Any, parsed: Any) -> None:
    assert parse_rate(text) == parsed


@pytest.mark.parametrize("text", ["5/h", "x/s", "5/", "/s", "0/s", "-1/min", "inf/s", "nan"])
def test_parse_rate_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        parse_rate(text)


@contextlib.contextmanager
def sandbox_command(*options: str) -> Iterator[str]:
    """``publishd sandbox serve`` as a process, with ``options``, up once it answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "interfaces.cli", "sandbox", "serve", "--port", str(port)]
    process = subprocess.Popen([*command, *options], stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{url}/healthz", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                assert process.poll() is None, process.communicate()[1].decode()
                assert time.monotonic() < deadline, "the sandbox did not start"
                time.sleep(0.05)  # polling a starting process: there is nothing to wait on
        yield url
    finally:
        process.terminate()
        process.communicate(timeout=10)


def test_the_command_line_takes_a_limit_per_minute() -> None:
    with sandbox_command("--rate-limit", "2/min") as url, httpx.Client(base_url=url) as http:
        statuses = [http.get("/collections") for _ in range(3)]
        assert [r.status_code for r in statuses] == [200, 200, 429]
        assert statuses[2].headers["X-RateLimit-Limit"] == "2"
        assert 2 <= int(statuses[2].headers["Retry-After"]) <= 60
