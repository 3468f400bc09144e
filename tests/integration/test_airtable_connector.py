"""AirtableConnector against the Airtable fake over real HTTP: shapes, limits, faults, rate."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from application.connector import EntryRejected, FatalConnectorError, RecordUpdate
from infrastructure.connectors.airtable import AirtableConnector
from infrastructure.connectors.rate_limit import RateLimiter
from infrastructure.fakes.airtable import create_app
from tests.support.servers import running_server

pytestmark = pytest.mark.anyio

TOKEN = "patSECRET0123456789.abcdef"
BASE = "appTESTBASE00001"
A1 = "recAUTHOR000000A1"
SEED: dict[str, Any] = {
    "base_id": BASE,
    "tables": {
        "Authors": {
            "unique": "slug",
            "fields": {"slug": "singleLineText", "name": "singleLineText"},
            "records": [{"id": A1, "fields": {"slug": "ada", "name": "Ada"}}],
        },
        "Books": {
            "unique": "slug",
            "fields": {
                "slug": "singleLineText",
                "title": "singleLineText",
                "subtitle": "singleLineText",
                "count": "number",
                "done": "checkbox",
                "author": {
                    "type": "multipleRecordLinks",
                    "linkedTable": "Authors",
                    "inverse": "books",
                },
            },
        },
    },
}
CONFIG: dict[str, Any] = {
    "type": "airtable",
    "base_id": BASE,
    "tables": {"authors": "Authors", "books": "Books"},
    "requests_per_second": 5,
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Fake:
    """The fake's admin side: faults, counters, and the records as the service holds them."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url)

    def faults(self, **options: Any) -> None:
        assert self.http.put("/_admin/faults", json={"rate_limit": None, **options}).is_success

    def stats(self) -> dict[str, Any]:
        return dict(self.http.get("/_admin/stats").json())

    def records(self, table: str) -> list[dict[str, Any]]:
        return list(self.http.get(f"/_admin/tables/{table}").json()["records"])

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        return self.http.request(method, f"/v0/{BASE}/{path}", headers=headers, **kwargs)


@pytest.fixture
def fake() -> Iterator[Fake]:
    with running_server(create_app(SEED, token=TOKEN)) as url:
        door = Fake(url)
        door.faults()  # no rate limit unless a test sets one: most tests are about other things
        try:
            yield door
        finally:
            door.http.close()


@contextlib.asynccontextmanager
async def airtable(
    fake: Fake, token: str = TOKEN, *, config: dict[str, Any] | None = None, **options: Any
) -> AsyncIterator[AirtableConnector]:
    options = {"rate_limiter": None, "backoff_base": 0.001, **options}
    connector = AirtableConnector(
        {**CONFIG, "base_url": f"{fake.url}/v0", **(config or {})}, token, **options
    )
    try:
        yield connector
    finally:
        await connector.aclose()


def books(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"slug": f"b{i}", "title": f"Book {i}"} for i in range(start, start + n)]


# -- happy paths ------------------------------------------------------------------------


async def test_create_update_read_list_delete(fake: Fake) -> None:
    async with airtable(fake) as c:
        created = await c.create_many("books", books(3), "k1")
        ids = [r.id for r in created]  # type: ignore[union-attr]
        assert all(i.startswith("rec") and len(i) == 17 for i in ids)
        first = created[0]
        assert not isinstance(first, Exception)
        assert first.field_data == {"slug": "b0", "title": "Book 0"}
        assert set(first.computed) == {"createdTime"}

        [updated] = await c.update_many("books", [RecordUpdate(ids[1], {"count": 2})], "k2")
        assert not isinstance(updated, Exception)
        assert updated.field_data == {"slug": "b1", "title": "Book 1", "count": 2}
        assert await c.read("books", ids[1]) == updated
        assert await c.read("books", "recNOSUCHRECORD00") is None

        page = await c.list_page("books", 0, 100)
        assert [r.id for r in page.records] == ids and page.total == 3

        await c.delete_many("books", ids[:2], "k3")
        assert [r["id"] for r in fake.records("Books")] == ids[2:]
    assert fake.stats()["creates"] == 3


async def test_read_many_reads_fifty_records_a_request(fake: Fake) -> None:
    async with airtable(fake) as c:
        made = []
        for start in range(0, 60, 10):
            made += await c.create_many("books", books(10, start), "k")
        ids = [r.id for r in made if not isinstance(r, Exception)]
        before = fake.stats()["requests"]
        found = await c.read_many("books", [*ids, "recNOSUCHRECORD00"])
        assert set(found) == set(ids)  # the unknown record is simply not there
        assert fake.stats()["requests"] - before == 2  # 61 ids: 50 + 11
        assert found[ids[7]].field_data == made[7].field_data  # type: ignore[union-attr]


async def test_sent_empty_values_come_back_as_sent(fake: Fake) -> None:
    async with airtable(fake) as c:
        fields = {"slug": "e", "title": "T", "subtitle": "", "done": False, "author": []}
        record = await c.create("books", fields, "k")
        [stored] = fake.records("Books")
        assert stored["fields"] == {"slug": "e", "title": "T"}  # the service leaves them out
        assert record.field_data == fields  # main then matches the draft

        cleared = await c.update("books", record.id, {"title": None}, "k2")
        assert cleared.field_data == {"slug": "e", "title": None}
        read = await c.read("books", record.id)
        assert read is not None and read.field_data == {"slug": "e"}  # no field invented


async def test_linked_records_are_reciprocal_and_a_delete_unlinks(fake: Fake) -> None:
    async with airtable(fake) as c:
        book = await c.create("books", {"slug": "x", "title": "X", "author": [A1]}, "k")
        assert book.field_data["author"] == [A1]
        author = await c.read("authors", A1)
        assert author is not None and author.field_data["books"] == [book.id]

        await c.delete_many("authors", [A1], "k-del")  # no 409: Airtable unlinks
        after = await c.read("books", book.id)
        assert after is not None and "author" not in after.field_data


# -- paging -----------------------------------------------------------------------------


async def test_list_pages_follow_the_cursor_and_survive_its_expiry(fake: Fake) -> None:
    async with airtable(fake) as c:
        for start in (0, 10, 20):
            await c.create_many("books", books(10 if start < 20 else 5, start), f"k{start}")
        expected = [r["id"] for r in fake.records("Books")]

        first = await c.list_page("books", 0, 10)
        second = await c.list_page("books", 10, 10)
        assert (first.total, second.total) == (11, 21)  # one more while pages remain
        assert fake.http.post("/_admin/cursors/expire").status_code == 204
        third = await c.list_page("books", 20, 10)  # its cursor expired: listed again, skipped
        assert third.total == 25
        assert [r.id for r in first.records + second.records + third.records] == expected

        fresh = await c.list_page("books", 15, 10)  # no cursor for 15 at all
        assert [r.id for r in fresh.records] == expected[15:20]
    stats = fake.stats()
    assert stats["cursors_expired"] >= 1


# -- limits and refusals ----------------------------------------------------------------


async def test_batch_limits_on_both_sides(fake: Fake) -> None:
    eleven = [{"fields": f} for f in books(11)]
    for method, kwargs in (
        ("POST", {"json": {"records": eleven}}),
        ("PATCH", {"json": {"records": eleven, "performUpsert": {"fieldsToMergeOn": ["slug"]}}}),
        ("DELETE", {"params": [("records[]", f"rec{i:014d}") for i in range(11)]}),
    ):
        answer = fake.api(method, "Books", **kwargs)
        assert answer.status_code == 422
        assert answer.json()["error"]["type"] == "INVALID_RECORDS"
    async with airtable(fake) as c:
        with pytest.raises(ValueError):
            await c.create_many("books", books(11), "k")
        with pytest.raises(ValueError):
            await c.update_many("books", [RecordUpdate(A1, {})] * 11, "k")
        with pytest.raises(ValueError):
            await c.delete_many("books", [A1] * 11, "k")
    assert fake.records("Books") == []


async def test_a_refused_batch_names_its_item_when_the_service_does(fake: Fake) -> None:
    async with airtable(fake) as c:
        created = [r.id for r in await c.create_many("books", books(3), "k")]  # type: ignore[union-attr]
        missing = "recMISSINGRECORD0"
        changes = [RecordUpdate(created[0], {"count": 1}), RecordUpdate(missing, {"count": 2})]
        with pytest.raises(EntryRejected) as by_id:
            await c.update_many("books", changes, "k2")
        assert by_id.value.index == 1 and "ROW_DOES_NOT_EXIST" in by_id.value.message

        bad_field = [*books(2, 10), {"slug": "b12", "colour": "red"}]
        with pytest.raises(EntryRejected) as by_field:
            await c.create_many("books", bad_field, "k3")
        assert by_field.value.index == 2 and "UNKNOWN_FIELD_NAME" in by_field.value.message

        both_bad = [{"slug": "c1", "count": "x"}, {"slug": "c2", "count": "y"}]
        with pytest.raises(EntryRejected) as unknown:
            await c.create_many("books", both_bad, "k4")
        assert unknown.value.index is None  # the engine halves the batch
    assert [r["fields"].get("count") for r in fake.records("Books")] == [None] * 3


async def test_auth_failures_and_unknown_tables_are_fatal_without_the_token(fake: Fake) -> None:
    wrong = "patWRONGTOKEN.0123456789"
    async with airtable(fake, wrong) as c:
        with pytest.raises(FatalConnectorError) as refused:
            await c.list_page("books", 0, 10)
        assert refused.value.status == 401
        assert wrong not in str(refused.value) and wrong not in repr(c)
    async with airtable(fake, config={"tables": {"books": "Nope"}}) as c:
        with pytest.raises(FatalConnectorError) as unknown:
            await c.create("books", {"slug": "s"}, "k")
        assert unknown.value.status == 403 and TOKEN not in str(unknown.value)
        assert TOKEN not in repr(c)


async def test_an_outage_past_the_budget_is_fatal(fake: Fake) -> None:
    fake.faults(outage=True)
    async with airtable(fake, max_retries=2) as c:
        with pytest.raises(FatalConnectorError, match="unavailable"):
            await c.read("books", A1)
    assert fake.stats()["failed"] == 3


# -- lost responses ---------------------------------------------------------------------


async def test_a_create_whose_answer_was_lost_is_not_created_twice(fake: Fake) -> None:
    fake.faults(lose_responses=1)
    async with airtable(fake) as c:
        first = await c.create_many("books", books(3), "k")
        again = await c.create_many("books", books(3), "k")  # a resumed run sends it again
    assert [r.id for r in first] == [r.id for r in again]  # type: ignore[union-attr]
    stats = fake.stats()
    assert (stats["lost_responses"], stats["duplicates"], stats["creates"]) == (1, 0, 3)
    assert len(fake.records("Books")) == 3


async def test_a_delete_whose_answer_was_lost_still_succeeds(fake: Fake) -> None:
    async with airtable(fake) as c:
        ids = [r.id for r in await c.create_many("books", books(2), "k")]  # type: ignore[union-attr]
        fake.faults(lose_responses=1)
        await c.delete_many("books", ids, "k-del")
        await c.delete_many("books", ids, "k-del")  # and once more, as a resume would
    assert fake.records("Books") == [] and fake.stats()["lost_responses"] == 1


# -- rate limit -------------------------------------------------------------------------


async def test_a_limiter_at_the_documented_rate_meets_no_429(fake: Fake) -> None:
    fake.faults(rate_limit=5, rate_window_s=1.0, penalty_s=30.0)
    async with airtable(fake, rate_limiter=RateLimiter(5, 1.0)) as c:
        await asyncio.gather(*(c.read("authors", A1) for _ in range(12)))
    stats = fake.stats()
    assert stats["requests"] == 12 and stats.get("rate_limited", 0) == 0


async def test_a_429_storm_pauses_the_shared_limiter_and_completes(fake: Fake) -> None:
    fake.faults(rate_limit=4, rate_window_s=1.0, penalty_s=0.3)
    limiter = RateLimiter(5, 1.0)  # the documented rate, but the service allows less today
    async with airtable(fake, rate_limiter=limiter, rate_penalty=0.3) as c:
        outcomes = await asyncio.gather(
            *(c.create("books", {"slug": f"s{i}"}, f"k{i}") for i in range(16))
        )
    stats = fake.stats()
    assert len({r.id for r in outcomes}) == 16 and stats["duplicates"] == 0
    assert 0 < stats["rate_limited"] <= 8  # each penalty costs a request or so, not a storm
    assert stats["requests"] == 16 + stats["rate_limited"]
    assert limiter.waited > 0
    assert len(fake.records("Books")) == 16


async def test_without_a_limiter_a_429_waits_out_the_penalty(fake: Fake) -> None:
    fake.faults(rate_limit=1, rate_window_s=0.2, penalty_s=0.2)
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        await asyncio.sleep(seconds)

    async with airtable(fake, rate_penalty=0.25, sleep=sleep) as c:
        assert await c.read("authors", A1) is not None
        assert await c.read("authors", A1) is not None
    limited = fake.stats()["rate_limited"]
    assert limited >= 1 and len(delays) == limited and min(delays) >= 0.25
    answer = fake.http.put("/_admin/faults", json={"rate_limit": 1, "penalty_s": 5})
    assert answer.is_success
    fake.api("GET", "Authors")
    refused = fake.api("GET", "Authors")
    assert refused.status_code == 429 and "retry-after" not in refused.headers
    assert refused.json() == {
        "errors": [
            {
                "error": "RATE_LIMIT_REACHED",
                "message": "Rate limit exceeded. Please try again later",
            }
        ]
    }


# -- schema -----------------------------------------------------------------------------


async def test_describe_lists_mapped_tables_with_fields_and_link_targets(fake: Fake) -> None:
    async with airtable(fake, config={"tables": {"books": "Books", "gone": "Missing"}}) as c:
        books_info, missing = await c.describe()
    authors_id = fake.http.get("/_admin/tables/Authors").json()["id"]
    assert books_info.name == "Books" and books_info.service_id is not None
    by_name = {f.name: f for f in books_info.fields}
    assert by_name["author"].type == "multipleRecordLinks"
    assert by_name["author"].target == authors_id
    assert by_name["title"].target is None
    assert (missing.folder, missing.service_id) == ("gone", None)
