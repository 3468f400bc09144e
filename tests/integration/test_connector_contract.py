"""One connector contract, run against the sandbox, the Webflow fake and the Airtable fake.

Each test says what any content service publishd supports must come to, and
checks it on the service's side (``tests.support.services``): what records it
holds, how many requests reached it. Everything else is real: publishd on
PostgreSQL with its projections, the worker's run engine, the connector the
workspace config builds, HTTP to the service running in this process. The
token reaches the connector only through the environment variable the config
names.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from typing import Any

import pytest

from application.connector import Connector, RecordUpdate
from domain.entries import EntryStatus
from domain.pipeline import PublishPipeline
from infrastructure.connectors.factory import build_connector
from infrastructure.connectors.rate_limit import RateLimiters
from infrastructure.connectors.retrying import CONNECTOR_REQUESTS
from infrastructure.postgres.database import Database
from infrastructure.settings import Settings
from interfaces.bootstrap import Runtime
from tests.support.publishing import projecting_runtime
from tests.support.services import KINDS, Row, Service, service

pytestmark = pytest.mark.timeout(120)

WS = "contract"


@pytest.fixture(params=KINDS)
def svc(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    with service(request.param).running(monkeypatch) as running:
        yield running


@pytest.fixture
def runtime(database: Database, schema: str) -> Iterator[Runtime]:
    with projecting_runtime(Settings(database_url=database.conninfo, db_schema=schema)) as rt:
        yield rt


# -- driving publishd ---------------------------------------------------------------------


def workspace(runtime: Runtime, svc: Service) -> None:
    runtime.app.create_workspace(WS, svc.config())
    for folder, folder_schema in svc.schemas().items():
        runtime.app.register_schema(WS, folder, folder_schema)


def pull(runtime: Runtime) -> str:
    started = runtime.app.start_pull(WS, None)

    async def go() -> None:
        try:
            await runtime.worker().run_pull(started.pull_id)
        finally:
            await runtime.aclose_connectors()

    asyncio.run(go())
    state: str = runtime.app.pull(started.pull_id).state
    return state


def publish(runtime: Runtime) -> PublishPipeline:
    pipeline = runtime.app.plan(WS, "alice")
    runtime.app.request_run(pipeline.pipeline_id)

    async def go() -> None:
        try:
            await runtime.worker().run_one(pipeline.pipeline_id)
        finally:
            await runtime.aclose_connectors()

    asyncio.run(go())
    published: PublishPipeline = runtime.app.pipeline(pipeline.pipeline_id)
    return published


def main_file(runtime: Runtime, path: str) -> dict[str, Any] | None:
    runtime.app.catch_up()
    found: dict[str, Any] | None = runtime.views.main_file(WS, path)
    return found


def write(runtime: Runtime, path: str, content: dict[str, Any]) -> None:
    runtime.app.write_draft_file(WS, "alice", path, content)


def with_author(runtime: Runtime, svc: Service, slug: str = "ada") -> str:
    """An author written in the service and pulled into main; its id."""
    author = svc.write("authors", "Ada", slug)
    workspace(runtime, svc)
    assert pull(runtime) == "completed"
    return author


def new_books(runtime: Runtime, svc: Service, count: int, prefix: str = "book") -> list[str]:
    slugs = [f"{prefix}-{n:02}" for n in range(count)]
    for n, slug in enumerate(slugs):
        book = {"name": f"Book {n}", "slug": slug, "author": svc.points_at("authors/ada.json")}
        write(runtime, f"books/{slug}.json", book)
    return slugs


def single(rows: dict[str, list[Row]], slug: str) -> Row:
    found = rows.get(slug, [])
    assert len(found) == 1, f"{len(found)} records with slug {slug!r}"
    return found[0]


def assert_recorded(
    pipeline: PublishPipeline, svc: Service, folder: str, *, failed: tuple[str, ...] = ()
) -> None:
    """Every create of ``folder`` (but ``failed``) published with the id of its one record."""
    rows = svc.by_slug(folder)
    for entry in pipeline.entries.values():
        if entry.path in failed:
            continue
        if entry.phase == "create" and entry.path.startswith(f"{folder}/"):
            slug = entry.path.removeprefix(f"{folder}/").removesuffix(".json")
            assert entry.status == EntryStatus.PUBLISHED, (entry.path, entry.error)
            assert entry.record_id == single(rows, slug).id, entry.path


# -- 1. the port ----------------------------------------------------------------------------


async def _port_round_trip(connector: Connector, svc: Service) -> dict[str, Any]:
    created = await connector.create("authors", {"name": "Ada", "slug": "ada"}, "k-create")
    seen: dict[str, Any] = {"created": created}
    seen["after_create"] = svc.rows("authors")
    read = await connector.read("authors", created.id)
    seen["read"] = read
    (updated,) = await connector.update_many(
        "authors", [RecordUpdate(created.id, {"name": "Ada Lovelace"})], "k-update"
    )
    seen["updated"] = updated
    seen["after_update"] = svc.rows("authors")
    second = await connector.create("authors", {"name": "Bea", "slug": "bea"}, "k-create-2")
    page = await connector.list_page("authors", 0, 100)
    seen["listed"] = page
    await connector.delete_many("authors", [created.id], "k-delete")
    seen["after_delete"] = svc.rows("authors")
    seen["read_deleted"] = await connector.read("authors", created.id)
    seen["second"] = second
    return seen


def test_create_update_delete_list_read_through_the_port(svc: Service) -> None:
    async def go() -> dict[str, Any]:
        environ = svc.env()
        connector = build_connector(
            svc.config(), concurrency=4, limiters=RateLimiters(), environ=environ
        )
        try:
            return await _port_round_trip(connector, svc)
        finally:
            await connector.aclose()

    seen = asyncio.run(go())

    created = seen["created"]
    assert created.field_data["name"] == "Ada" and created.field_data["slug"] == "ada"
    assert [(r.id, r.name) for r in seen["after_create"]] == [(created.id, "Ada")]
    assert seen["read"] is not None and seen["read"].id == created.id
    assert seen["read"].field_data["name"] == "Ada"
    assert seen["updated"].field_data["name"] == "Ada Lovelace"
    assert [(r.id, r.name) for r in seen["after_update"]] == [(created.id, "Ada Lovelace")]
    listed = seen["listed"]
    assert {r.id for r in listed.records} == {created.id, seen["second"].id}
    assert listed.total >= len(listed.records)
    assert [r.slug for r in seen["after_delete"]] == ["bea"]
    assert seen["read_deleted"] is None


# -- 2. batch limits ------------------------------------------------------------------------


def test_new_books_go_out_in_batches_of_the_service_limit(runtime: Runtime, svc: Service) -> None:
    author = with_author(runtime, svc)
    slugs = new_books(runtime, svc, 25)
    svc.reset_counts()

    pipeline = publish(runtime)

    assert pipeline.state == "completed", pipeline.counts()
    assert svc.create_requests("books") == math.ceil(25 / svc.create_limit)
    rows = svc.by_slug("books")
    assert sorted(rows) == slugs
    assert all(single(rows, slug).author == author for slug in slugs)
    assert_recorded(pipeline, svc, "books")


# -- 3. a rejected item inside a batch ------------------------------------------------------


def test_a_rejected_book_fails_alone_with_the_services_message(
    runtime: Runtime, svc: Service
) -> None:
    with_author(runtime, svc)
    good = new_books(runtime, svc, 6)
    bad = {"name": "Orphan", "slug": "orphan", "author": svc.raw_reference(svc.missing_author)}
    write(runtime, "books/orphan.json", bad)

    pipeline = publish(runtime)

    assert pipeline.state == "completed_with_errors", pipeline.counts()
    failed = [e for e in pipeline.entries.values() if e.status == EntryStatus.FAILED]
    assert [e.path for e in failed] == ["books/orphan.json"]
    assert failed[0].error is not None and svc.rejection in failed[0].error, failed[0].error
    rows = svc.by_slug("books")
    assert sorted(rows) == good  # the rest of the batch, each once; no orphan
    assert svc.duplicates() == 0
    assert_recorded(pipeline, svc, "books", failed=("books/orphan.json",))


# -- 4. a referenced delete -----------------------------------------------------------------


def test_deleting_an_author_an_unchanged_book_points_at(runtime: Runtime, svc: Service) -> None:
    ada = svc.write("authors", "Ada", "ada")
    svc.write("authors", "Bea", "bea")
    kept = svc.write("books", "Kept", "kept", author=ada)
    workspace(runtime, svc)
    assert pull(runtime) == "completed"
    runtime.app.delete_draft_file(WS, "alice", "authors/ada.json")

    pipeline = publish(runtime)

    assert pipeline.state == "completed", pipeline.counts()
    assert sorted(svc.by_slug("authors")) == ["bea"]
    book = single(svc.by_slug("books"), "kept")
    assert book.id == kept and book.author is None and book.name == "Kept"


# -- 5. a 429 storm -------------------------------------------------------------------------


def connector_requests(connector: str, outcome: str) -> float:
    """``publishd_connector_requests_total`` of one connector and outcome, over the kinds."""
    return sum(
        sample.value
        for metric in CONNECTOR_REQUESTS.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
        and sample.labels["connector"] == connector
        and sample.labels["outcome"] == outcome
    )


def test_a_429_storm_ends_in_a_completed_publish_without_duplicates(
    runtime: Runtime, svc: Service
) -> None:
    author = with_author(runtime, svc)
    slugs = new_books(runtime, svc, 12)
    write(runtime, "authors/woolf.json", {"name": "Woolf", "slug": "woolf"})
    svc.storm()
    seen_429 = connector_requests(svc.kind, "429")

    pipeline = publish(runtime)

    svc.quiet()
    assert pipeline.state == "completed", pipeline.counts()
    assert svc.fault_counts()["rate_limited"] >= 2
    # every 429 the service answered is in /metrics' count, under this connector
    assert connector_requests(svc.kind, "429") - seen_429 == svc.fault_counts()["rate_limited"]
    assert connector_requests(svc.kind, "2xx") > 0
    assert svc.duplicates() == 0
    rows = svc.by_slug("books")
    assert sorted(rows) == slugs
    assert all(single(rows, slug).author == author for slug in slugs)
    assert sorted(svc.by_slug("authors")) == ["ada", "woolf"]
    assert_recorded(pipeline, svc, "books")
    assert_recorded(pipeline, svc, "authors")


# -- 6. lost responses ----------------------------------------------------------------------


def test_lost_responses_end_in_a_completed_publish_with_every_record_right(
    runtime: Runtime, svc: Service
) -> None:
    with_author(runtime, svc)
    slugs = new_books(runtime, svc, 12)
    for n, slug in enumerate(("woolf", "tolstoy")):
        write(runtime, f"authors/{slug}.json", {"name": f"Author {n}", "slug": slug})
    for n, slug in enumerate(slugs[:4]):  # books pointing at new authors: a second wave
        book = {
            "name": f"Book {n}",
            "slug": slug,
            "author": svc.points_at("authors/woolf.json"),
        }
        write(runtime, f"books/{slug}.json", book)
    svc.lose_responses()

    pipeline = publish(runtime)

    svc.quiet()
    assert pipeline.state == "completed", pipeline.counts()
    assert svc.fault_counts()["lost_responses"] >= 2
    assert svc.duplicates() == 0
    authors = svc.by_slug("authors")
    assert sorted(authors) == ["ada", "tolstoy", "woolf"]
    rows = svc.by_slug("books")
    assert sorted(rows) == slugs
    for n, slug in enumerate(slugs):
        wanted = "woolf" if n < 4 else "ada"
        held = single(rows, slug)
        assert held.author == single(authors, wanted).id, slug
        assert held.name == f"Book {n}"
    assert_recorded(pipeline, svc, "books")
    assert_recorded(pipeline, svc, "authors")


# -- 7. pulls -------------------------------------------------------------------------------


def test_a_full_pull_brings_main_to_what_the_service_holds(runtime: Runtime, svc: Service) -> None:
    authors = {f"author-{n}": svc.write("authors", f"Author {n}", f"author-{n}") for n in range(3)}
    books = {
        f"book-{n}": svc.write("books", f"Book {n}", f"book-{n}", author=authors[f"author-{n % 3}"])
        for n in range(5)
    }
    workspace(runtime, svc)

    assert pull(runtime) == "completed"

    for slug, record_id in authors.items():
        found = main_file(runtime, f"authors/{slug}.json")
        assert found is not None, slug
        assert found["id"] == record_id and found["name"] == f"Author {slug[-1]}"
    for n, (slug, record_id) in enumerate(books.items()):
        found = main_file(runtime, f"books/{slug}.json")
        assert found is not None, slug
        assert found["id"] == record_id and found["name"] == f"Book {n}"
        assert found["author"] == svc.raw_reference(authors[f"author-{n % 3}"])
    runtime.app.catch_up()
    files = [("authors", f"{s}.json") for s in authors] + [("books", f"{s}.json") for s in books]
    known = runtime.views.record_ids(WS, files)
    assert known == {
        **{("authors", f"{s}.json"): i for s, i in authors.items()},
        **{("books", f"{s}.json"): i for s, i in books.items()},
    }
