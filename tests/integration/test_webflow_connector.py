"""WebflowConnector against the local Webflow fake over real HTTP.

The fake keeps Webflow's rules (CONNECTORS.md): unique slugs, whole-request
refusals, 409 on a referenced delete, a per-token sliding rate window. Each
test asserts what the fake holds or counts afterwards, past the connector.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from application.connector import EntryRejected, FatalConnectorError, Record, TransientFailure
from infrastructure.connectors.rate_limit import RateLimiter
from infrastructure.connectors.webflow import WebflowConnector
from infrastructure.fakes.webflow import WebflowFaults, create_app
from tests.support.servers import running_server

pytestmark = pytest.mark.anyio

TOKEN = "wf-test-token-0123456789abcdef"
AUTHORS = "64f0000000000000000000a1"
BOOKS = "64f0000000000000000000b1"
SEED: list[dict[str, Any]] = [
    {
        "id": AUTHORS,
        "displayName": "Authors",
        "fields": [{"slug": "bio", "type": "PlainText"}],
        "items": [{"id": "64f0000000000000000a0001", "fieldData": {"name": "Ada", "slug": "ada"}}],
    },
    {
        "id": BOOKS,
        "displayName": "Books",
        "fields": [
            {"slug": "author", "type": "Reference", "validations": {"collectionId": AUTHORS}},
            {"slug": "editors", "type": "MultiReference", "validations": {"collectionId": AUTHORS}},
        ],
    },
]
ADA = "64f0000000000000000a0001"
MAP = {"authors": AUTHORS, "books": BOOKS}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Fake:
    """The fake's admin side, and its public API with the right token, past the connector."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.base_url = f"{url}/v2"
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"})

    def faults(self, **options: Any) -> None:
        options = {"rate_limit": None, **options}
        assert self.http.put("/_admin/faults", json=options).status_code == 200

    def stats(self) -> dict[str, Any]:
        return dict(self.http.get("/_admin/stats").json())

    def reset_stats(self) -> None:
        self.http.delete("/_admin/stats")

    def items(self, collection: str, *, live: bool = False) -> list[dict[str, Any]]:
        path = f"/v2/collections/{collection}/items{'/live' if live else ''}"
        items: list[dict[str, Any]] = self.http.get(path).json()["items"]
        return items

    def slugs(self, collection: str, *, live: bool = False) -> list[str]:
        return [i["fieldData"]["slug"] for i in self.items(collection, live=live)]


@pytest.fixture
def fake() -> Iterator[Fake]:
    app = create_app(SEED, token=TOKEN, faults=WebflowFaults(rate_limit=None))
    with running_server(app) as url:
        side = Fake(url)
        try:
            yield side
        finally:
            side.http.close()


@contextlib.asynccontextmanager
async def connector(
    fake: Fake, token: str = TOKEN, *, limiter: RateLimiter | None = None, **options: Any
) -> AsyncIterator[WebflowConnector]:
    """The connector under test: short backoffs, and a limiter that never waits unless given."""
    config = {"type": "webflow", "base_url": fake.base_url, "site_id": "s", "collections": MAP}
    config.update(options.pop("config", {}))
    options = {"backoff_base": 0.001, "backoff_max": 0.01, "timeout": 5.0, **options}
    client = WebflowConnector(
        config, token, rate_limiter=limiter or RateLimiter(100_000, 1.0), **options
    )
    try:
        yield client
    finally:
        await client.aclose()


def book(n: int, **fields: Any) -> dict[str, Any]:
    return {"name": f"Book {n}", "slug": f"book-{n}", **fields}


# -- happy paths ------------------------------------------------------------------------


async def test_create_update_list_read_delete(fake: Fake) -> None:
    async with connector(fake) as c:
        created = await c.create_many("books", [book(1, author=ADA), book(2)], "k1")
        first, second = created
        assert not isinstance(first, Exception) and not isinstance(second, Exception)
        assert len(first.id) == 24 and int(first.id, 16) >= 0
        assert first.field_data == {"name": "Book 1", "slug": "book-1", "author": ADA}
        assert set(first.computed) == {
            "createdOn",
            "lastUpdated",
            "lastPublished",
            "isDraft",
            "isArchived",
            "cmsLocaleId",
        }
        assert first.computed["lastPublished"] is None  # staged, not published

        updated = await c.update("books", first.id, {"author": None, "isArchived": True}, "k2")
        assert updated.field_data["author"] is None
        assert updated.computed["isArchived"] is True

        page = await c.list_page("books", 1, 1)
        assert page.total == 2 and [r.id for r in page.records] == [second.id]
        assert await c.read("books", first.id) == updated
        assert await c.read("books", "64f0000000000000000fffff") is None

        await c.delete_many("books", [first.id, second.id], "k3")
        assert fake.items(BOOKS) == []
    stats = fake.stats()
    assert (stats["creates"], stats["updates"], stats["deletes"]) == (2, 1, 2)


async def test_describe_names_fields_and_reference_targets(fake: Fake) -> None:
    async with connector(fake) as c:
        infos = {info.folder: info for info in await c.describe()}
    books = infos["books"]
    assert books.service_id == BOOKS
    fields = {f.name: f for f in books.fields}
    assert {"name", "slug", "author", "editors"} <= set(fields)
    assert fields["author"].target == AUTHORS
    assert fields["editors"].type == "MultiReference"
    assert fields["name"].target is None


async def test_an_unmapped_folder_is_fatal(fake: Fake) -> None:
    async with connector(fake) as c:
        with pytest.raises(FatalConnectorError, match="not mapped"):
            await c.list_page("nowhere", 0, 10)


# -- limits and refusals ----------------------------------------------------------------


async def test_batches_over_100_are_refused_by_the_fake_and_never_sent(fake: Fake) -> None:
    too_many = [{"fieldData": book(n)} for n in range(101)]
    refused = fake.http.post(f"/v2/collections/{BOOKS}/items", json={"items": too_many})
    assert refused.status_code == 400
    assert refused.json()["code"] == "validation_error"
    assert refused.json()["details"][0]["param"] == "items"
    page = fake.http.get(f"/v2/collections/{BOOKS}/items", params={"limit": 101})
    assert page.status_code == 400 and page.json()["details"][0]["param"] == "limit"
    fake.reset_stats()
    async with connector(fake) as c:
        with pytest.raises(ValueError):
            await c.create_many("books", [book(n) for n in range(101)], "k")
        with pytest.raises(ValueError):
            await c.delete_many("books", [f"{n:024x}" for n in range(101)], "k")
        created = await c.create_many("books", [book(n) for n in range(100)], "k")
    assert len(created) == 100 and fake.stats()["requests"] == 1


async def test_one_bad_item_refuses_the_batch_without_an_index(fake: Fake) -> None:
    async with connector(fake) as c:
        with pytest.raises(EntryRejected) as caught:
            await c.create_many("books", [book(1), book(2, slug="ada"), book(3, nope=1)], "k")
        assert caught.value.status == 400 and caught.value.index is None
        assert caught.value.details["details"][0]["param"] == "nope"
        with pytest.raises(EntryRejected) as single:
            await c.create_many("books", [book(4, author="64f0000000000000000fffff")], "k")
        assert single.value.index == 0 and "author" in single.value.message
    assert fake.items(BOOKS) == []


async def test_a_duplicate_slug_is_a_validation_error_on_slug(fake: Fake) -> None:
    async with connector(fake) as c:
        await c.create("books", book(1), "k")
        with pytest.raises(EntryRejected) as caught:
            await c.create_many("books", [book(2), book(1)], "k")
    assert caught.value.details["details"][0]["param"] == "slug"
    assert fake.slugs(BOOKS) == ["book-1"]


async def test_a_referenced_delete_is_a_409_naming_the_conflicts(fake: Fake) -> None:
    async with connector(fake) as c:
        referrer = await c.create("books", book(1, editors=[ADA]), "k")
        with pytest.raises(EntryRejected) as caught:
            await c.delete_many("authors", [ADA], "k")
        assert caught.value.status == 409
        conflicts = caught.value.details["details"][0]["conflicts"]
        assert conflicts[0]["itemId"] == ADA
        assert conflicts[0]["referencedBy"][0]["itemId"] == referrer.id
        assert [i["id"] for i in fake.items(AUTHORS)] == [ADA]

        await c.update("books", referrer.id, {"editors": []}, "k")
        await c.delete_many("authors", [ADA], "k")
    assert fake.items(AUTHORS) == []


async def test_auth_failure_is_fatal_and_never_shows_the_token(fake: Fake) -> None:
    wrong = "wf-wrong-token-do-not-print-me"
    async with connector(fake, wrong) as c:
        assert wrong not in repr(c)
        with pytest.raises(FatalConnectorError) as caught:
            await c.list_page("books", 0, 10)
    assert caught.value.status == 401
    assert wrong not in str(caught.value) and wrong not in str(caught.value.details)
    assert fake.stats()["requests"] == 1  # not retried


# -- live and staged --------------------------------------------------------------------


async def test_staged_writes_are_published_by_finish_run(fake: Fake) -> None:
    async with connector(fake) as c:
        created = await c.create_many("books", [book(n) for n in range(3)], "k")
        assert fake.items(BOOKS, live=True) == []
        ids = [r.id for r in created if not isinstance(r, Exception)]
        await c.finish_run({"books": ids})
        await c.finish_run({"books": ids})  # a resumed run publishes again, harmlessly
    assert fake.slugs(BOOKS, live=True) == ["book-0", "book-1", "book-2"]
    assert fake.stats()["requests_POST"] == 3


async def test_live_writes_and_deletes_reach_the_live_site(fake: Fake) -> None:
    async with connector(fake, config={"live": True}) as c:
        record = await c.create("books", book(1), "k")
        assert record.computed["lastPublished"] is not None
        await c.update("books", record.id, {"name": "Renamed"}, "k")
        assert fake.items(BOOKS, live=True)[0]["fieldData"]["name"] == "Renamed"
        await c.finish_run({"books": [record.id]})  # nothing left to publish
        await c.delete_many("books", [record.id], "k")
    assert fake.items(BOOKS) == [] and fake.items(BOOKS, live=True) == []
    assert fake.stats().get("published", 0) == 0


# -- failures: 429, 5xx, lost responses, outages ----------------------------------------


async def test_a_429_storm_is_outlasted_within_the_retry_budget(fake: Fake) -> None:
    fake.faults(refuse_next=4, retry_after_s=0)
    async with connector(fake, max_retries=5) as c:
        assert (await c.list_page("books", 0, 10)).total == 0
        fake.faults(refuse_next=10, retry_after_s=0)
        with pytest.raises(TransientFailure):
            await c.list_page("books", 0, 10)
    assert fake.stats()["rate_limited"] == 4 + 6


async def test_the_rate_window_refuses_and_a_shared_limiter_completes(fake: Fake) -> None:
    fake.faults(rate_limit=5, rate_window_s=0.5)
    spent = [fake.http.get(f"/v2/collections/{BOOKS}").status_code for _ in range(6)]
    assert spent == [200] * 5 + [429]  # another client of the token used the window up
    refused = fake.http.get(f"/v2/collections/{BOOKS}")
    assert refused.headers["Retry-After"] == "1" and refused.json()["code"] == "too_many_requests"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    fake.reset_stats()
    started = time.monotonic()
    async with connector(fake, limiter=RateLimiter(5, 0.5), max_retries=3) as c:
        pages = await asyncio.gather(*(c.list_page("books", 0, 1) for _ in range(15)))
    assert all(page.total == 0 for page in pages)
    stats = fake.stats()
    assert stats["requests"] - stats["rate_limited"] == 15
    assert stats["rate_limited"] <= 5  # learned at the first 429, then paced
    assert time.monotonic() - started >= 1.0  # waited out Retry-After: 1


async def test_a_lost_create_answer_is_found_by_slug_not_created_twice(fake: Fake) -> None:
    fake.faults(lose_next_writes=1)
    async with connector(fake) as c:
        created = await c.create_many("books", [book(n) for n in range(3)], "k")
    assert [r.field_data["slug"] for r in created if not isinstance(r, Exception)] == [
        "book-0",
        "book-1",
        "book-2",
    ]
    stats = fake.stats()
    assert stats["lost_responses"] == 1 and stats["creates"] == 3
    assert stats.get("duplicates", 0) == 0
    assert fake.slugs(BOOKS) == ["book-0", "book-1", "book-2"]


async def test_find_created_looks_up_by_slug_or_by_listing(fake: Fake) -> None:
    async with connector(fake) as c:
        for start in (0, 100):
            await c.create_many("books", [book(n) for n in range(start, start + 100)], "k")
        fake.reset_stats()
        one = await c.find_created("books", [book(150)])
        assert [r.field_data["slug"] if r else None for r in one] == ["book-150"]
        assert fake.stats()["requests"] == 1
        fake.reset_stats()
        wanted = [book(5), book(199), book(1000), {"name": "no slug"}]
        found = await c.find_created("books", wanted)
        assert [r.field_data["slug"] if r else None for r in found] == [
            "book-5",
            "book-199",
            None,
            None,
        ]
        assert fake.stats()["requests"] == 2  # a whole listing: two pages


async def test_read_many_reads_a_batch_in_a_listings_few_requests(fake: Fake) -> None:
    async with connector(fake) as c:
        made = []
        for start in (0, 100):
            made += await c.create_many("books", [book(n) for n in range(start, start + 100)], "k")
        ids = [*[r.id for r in made if isinstance(r, Record)][:150], "64f0000000000000000fffff"]
        fake.reset_stats()
        found = await c.read_many("books", ids)
        assert set(found) == set(ids[:150])  # the unknown id is simply not there
        assert fake.stats()["requests"] == 2  # two pages, not 151 reads
        fake.reset_stats()
        assert set(await c.read_many("books", ids[:1])) == set(ids[:1])
        assert fake.stats()["requests"] == 1


async def test_a_lost_delete_answer_is_not_an_error(fake: Fake) -> None:
    async with connector(fake) as c:
        created = await c.create_many("books", [book(1), book(2)], "k")
        fake.faults(lose_next_writes=1)
        await c.delete_many("books", [r.id for r in created if not isinstance(r, Exception)], "k")
    assert fake.items(BOOKS) == [] and fake.stats()["lost_responses"] == 1


async def test_failures_are_retried_and_an_outage_is_fatal(fake: Fake) -> None:
    fake.faults(fail_next=2)
    async with connector(fake) as c:
        record = await c.update("authors", ADA, {"bio": "x"}, "k")
        assert record.field_data["bio"] == "x"
    fake.faults(outage=True)
    async with connector(fake, max_retries=2) as c:
        with pytest.raises(FatalConnectorError, match="unavailable"):
            await c.read("authors", ADA)
