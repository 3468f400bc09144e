"""Batched publishing against the sandbox over HTTP, counted on the sandbox's own stats.

A run's cost is its requests (``domain.calls``), so these tests count them:
the sandbox's ``requests`` around a run is what the run sent, retries and
refusals included. Each test then checks the records themselves, page by
page: every one there once, with its fields and with its pointers at the
right new ids.

Random faults draw from the sandbox's seeded RNG. Where the outcome depends
on which call meets which draw (429s that could exhaust one call's retries),
the run sends one call at a time, so the draws meet the calls in a fixed
order and the test is the same every time.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from domain.calls import calls_per_phase
from domain.connector_config import BATCH_LIMITS
from domain.pipeline import PublishPipeline
from domain.plan import Phase
from infrastructure.postgres.database import Database
from tests.support.publishing import Harness, harness

pytestmark = pytest.mark.timeout(120)

Files = dict[str, dict[str, Any]]


@pytest.fixture
def lib(database: Database, schema: str) -> Iterator[Harness]:
    with harness(database, schema) as h:
        yield h


# --- drafts ---------------------------------------------------------------------------


def _authors(prefix: str, n: int) -> Files:
    return {
        f"authors/{prefix}{i:04}.json": {"name": f"{prefix.upper()}{i}", "slug": f"{prefix}{i:04}"}
        for i in range(n)
    }


def _books_of(authors: Files, prefix: str) -> Files:
    """One book per author, pointing at it (book ``i`` at author ``i``)."""
    return {
        f"books/{prefix}{i:04}.json": {
            "title": f"{prefix.upper()}{i}",
            "slug": f"{prefix}{i:04}",
            "author": f"@/{path}",
        }
        for i, path in enumerate(sorted(authors))
    }


def _favourites(authors: Files, books: Files, n: int) -> None:
    """The first ``n`` authors point back at their own book: ``n`` two-record cycles."""
    for author, book in list(zip(sorted(authors), sorted(books), strict=True))[:n]:
        authors[author]["favourite_book"] = f"@/{book}"


def _seed_books(lib: Harness, n: int, author: str) -> dict[str, str]:
    """``n`` books made upstream and pulled onto main: their paths -> record ids."""
    ids = {
        f"books/e{i:02}.json": lib.create_item(
            "books", {"title": f"E{i}", "slug": f"e{i:02}", "author": author}
        )
        for i in range(n)
    }
    lib.pull()
    return ids


def _edits(lib: Harness, paths: list[str], new_authors: list[str]) -> Files:
    """Each main file of ``paths`` retitled; the first ones also moved to a new author."""
    edits: Files = {}
    for i, path in enumerate(paths):
        content = lib.main(path)
        assert content is not None, path
        edits[path] = {**content, "title": f"{content['title']} (revised)"}
        if i < len(new_authors):
            edits[path]["author"] = f"@/{new_authors[i]}"
    return edits


# --- running and checking -------------------------------------------------------------


def _plan_and_request(lib: Harness) -> PublishPipeline:
    pipeline: PublishPipeline = lib.app.plan(lib.workspace, "alice")
    lib.app.request_run(pipeline.pipeline_id)
    return pipeline


def _estimated_calls(pipeline: PublishPipeline) -> dict[Phase, int]:
    """The plan's calls per phase as the plan response states them, with the sandbox's limits."""
    return calls_per_phase(pipeline.pipeline_id, pipeline.entries.values(), BATCH_LIMITS["sandbox"])


def _delta(before: dict[str, Any], after: dict[str, Any]) -> Counter[str]:
    """How much each of the sandbox's counters moved."""
    return Counter(
        {
            key: after.get(key, 0) - before.get(key, 0)
            for key in set(before) | set(after)
            if isinstance(after.get(key, 0), int)
        }
    )


def _run(
    lib: Harness, pipeline: PublishPipeline, concurrency: int | None = None
) -> tuple[PublishPipeline, Counter[str]]:
    """Run the pipeline; its end state and what the sandbox counted meanwhile."""
    before = lib.stats()
    if concurrency is None:
        done = lib.run(pipeline.pipeline_id)
    else:
        done = lib.run_with_concurrency(pipeline.pipeline_id, concurrency)
    return done, _delta(before, lib.stats())


def _by_slug(lib: Harness, collection: str) -> dict[str, dict[str, Any]]:
    """The collection's items by slug; a slug held by two items fails the test."""
    items = lib.all_items(collection)
    counts = Counter(item["fieldData"].get("slug") for item in items)
    twice = sorted(str(slug) for slug, n in counts.items() if n > 1)
    assert not twice, f"{collection}: records made more than once: {twice[:10]}"
    return {item["fieldData"]["slug"]: item for item in items}


def _expected(content: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    """A draft file's fields as the service must hold them: @-refs resolved to ``ids``."""
    fields = {}
    for name, value in content.items():
        if name in ("id", "createdOn", "lastUpdated", "cdnUrl"):
            continue
        if isinstance(value, str) and value.startswith("@/"):
            value = ids[value[2:]]
        fields[name] = value
    return fields


def _check_records(lib: Harness, files: Files, ids: dict[str, str]) -> None:
    """Every file of ``files`` is one record at its id, holding exactly its fields."""
    items = {folder: _by_slug(lib, folder) for folder in {p.split("/")[0] for p in files}}
    for path, content in files.items():
        item = items[path.split("/")[0]][content["slug"]]
        assert item["id"] == ids[path], path
        assert item["fieldData"] == _expected(content, ids), path


# --- the tests ------------------------------------------------------------------------


def test_250_new_authors_go_out_in_three_bulk_creates(lib: Harness) -> None:
    lib.setup_library()
    authors = _authors("n", 250)
    lib.write_many(authors)
    pipeline = _plan_and_request(lib)

    assert _estimated_calls(pipeline) == {Phase.CREATE: 3}
    done, counted = _run(lib, pipeline)

    assert done.state == "completed", done.counts()
    assert counted["requests"] == counted["bulk_creates"] == 3  # 100 + 100 + 50
    assert counted["creates"] == 250
    assert counted["rate_limited"] == counted["duplicates"] == 0
    _check_records(lib, authors, done.created_record_ids())
    assert len(lib.all_items("authors")) == 2 + 250


def test_creates_go_out_in_waves_and_only_cycle_fields_wait_for_the_backfill(
    lib: Harness,
) -> None:
    """120 books point at 120 new authors; 5 of those authors point back at their book.

    Authors go first (the folder the others point at), books a wave later with
    their author resolved, and only the 5 ``favourite_book`` fields wait for
    the backfill: 2 + 2 bulk creates and 1 bulk update.
    """
    lib.setup_library()
    authors = _authors("a", 120)
    books = _books_of(authors, "b")
    _favourites(authors, books, 5)
    lib.write_many({**authors, **books})
    pipeline = _plan_and_request(lib)

    deferred = {e.key: e.deferred_fields for e in pipeline.entries.values() if e.deferred_fields}
    cyclic = sorted(authors)[:5]
    assert deferred == {f"create:{path}": ["favourite_book"] for path in cyclic}
    backfill = sorted(e.path for e in pipeline.entries_of(Phase.BACKFILL))
    assert backfill == cyclic
    assert _estimated_calls(pipeline) == {Phase.CREATE: 4, Phase.BACKFILL: 1}
    done, counted = _run(lib, pipeline)

    assert done.state == "completed", done.counts()
    per_wave = math.ceil(120 / BATCH_LIMITS["sandbox"].create)
    assert counted["bulk_creates"] == 2 * per_wave
    assert counted["bulk_updates"] == 1
    assert counted["requests"] == 2 * per_wave + 1
    ids = done.created_record_ids()
    _check_records(lib, {**authors, **books}, ids)  # pointers both ways, at the new ids
    # the authors' wave was created before the books' wave
    created = {
        item["id"]: item["createdOn"] for f in ("authors", "books") for item in lib.all_items(f)
    }
    assert max(created[ids[p]] for p in authors) < min(created[ids[p]] for p in books)


def test_a_refused_item_fails_alone_and_the_rest_of_its_batch_is_published(
    lib: Harness,
) -> None:
    """60 books in one batch, 3 of them pointing at an id the service has no record for.

    The sandbox refuses the whole request for the first bad item it finds and
    names its index; the run fails that item and resends the rest: 60, 59 and
    58 items refused, 57 applied: 4 requests, one of them applied.
    """
    lib.setup_library()
    bad = {"books/x10.json", "books/x30.json", "books/x50.json"}
    books: Files = {
        f"books/x{i:02}.json": {
            "title": f"X{i}",
            "slug": f"x{i:02}",
            "author": "no-such-id" if f"books/x{i:02}.json" in bad else "@/authors/hemingway.json",
        }
        for i in range(60)
    }
    lib.write_many(books)
    pipeline = _plan_and_request(lib)
    assert _estimated_calls(pipeline) == {Phase.CREATE: 1}

    done, counted = _run(lib, pipeline)

    assert done.state == "completed_with_errors", done.counts()
    assert done.phase_counts(Phase.CREATE)["failed"] == 3
    failed = {e.path: e for e in done.entries.values() if e.status == "failed"}
    assert set(failed) == bad
    for entry in failed.values():
        assert entry.error is not None and "field 'author'" in entry.error, entry.error
        assert entry.error_code == "rejected"
        assert isinstance(entry.error_details, dict)
        assert entry.error_details["field"] == "author"
        assert entry.error_details["missing"] == ["no-such-id"]
    assert counted["requests"] == 4
    assert counted["bulk_creates"] == 1 and counted["creates"] == 57
    good = {path: content for path, content in books.items() if path not in bad}
    hemingway = lib.main("authors/hemingway.json")
    assert hemingway is not None
    _check_records(
        lib, good, {**done.created_record_ids(), "authors/hemingway.json": hemingway["id"]}
    )
    slugs = set(_by_slug(lib, "books"))
    assert not slugs & {books[path]["slug"] for path in bad}


def test_a_429_storm_completes_every_create_and_edit_once(lib: Harness) -> None:
    """Half of all requests refused with ``Retry-After: 0``; calls in turn (module docstring)."""
    ids = lib.setup_library()
    seeded = _seed_books(lib, 50, ids["hemingway"])
    authors = _authors("s", 150)
    books = _books_of(authors, "t")
    edits = _edits(lib, sorted(seeded), sorted(authors)[:10])
    lib.write_many({**authors, **books, **edits})
    # seed 39: the 6 calls (1 edit, 2 + 2 creates, 1 backfill) meet 4, 0, 3, 1, 4, 0 refusals
    # before their answer; 6 in a row would spend a call's budget (seed 4 does)
    lib.set_faults(rate_limit_429_rate=0.5, retry_after_s=0, seed=39)
    pipeline = _plan_and_request(lib)

    done, counted = _run(lib, pipeline, concurrency=1)

    assert done.state == "completed", done.counts()
    assert counted["rate_limited"] > 6  # more refusals than calls
    assert counted["requests"] == 6 + counted["rate_limited"]
    assert counted["duplicates"] == 0  # a 429 applies nothing, so nothing is replayed
    assert counted["creates"] == 300 and counted["updates"] == 50
    lib.set_faults()
    ids = {**done.created_record_ids(), **seeded, "authors/hemingway.json": ids["hemingway"]}
    _check_records(lib, {**authors, **books, **edits}, ids)
    assert len(lib.all_items("books")) == 3 + 50 + 150


def test_lost_responses_on_batches_are_replayed_not_written_twice(lib: Harness) -> None:
    """A tenth of the writes applied and answered 502: each retry with its key is a replay.

    The count of lost answers depends only on the seed (one draw per write
    request, in whatever order they come), so the seed is chosen to lose some.
    """
    ids = lib.setup_library()
    seeded = _seed_books(lib, 30, ids["hemingway"])
    authors = _authors("l", 160)
    books = _books_of(authors, "m")
    _favourites(authors, books, 5)
    edits = _edits(lib, sorted(seeded), sorted(authors)[:10])
    lib.write_many({**authors, **books, **edits})
    lib.set_faults(lost_response_rate=0.1, seed=3)
    pipeline = _plan_and_request(lib)
    assert _estimated_calls(pipeline) == {
        Phase.EDIT: 1,
        Phase.CREATE: 4,
        Phase.BACKFILL: 2,  # authors' favourite books; books moved to new authors
    }

    done, counted = _run(lib, pipeline)

    assert done.state == "completed", done.counts()
    assert counted["lost_responses"] >= 1
    assert counted["duplicates"] == counted["lost_responses"]  # every lost answer replayed once
    assert counted["requests"] == 7 + counted["lost_responses"]
    lib.set_faults()
    ids = {**done.created_record_ids(), **seeded, "authors/hemingway.json": ids["hemingway"]}
    _check_records(lib, {**authors, **books, **edits}, ids)
    assert len(lib.all_items("authors")) == 2 + 160
    assert len(lib.all_items("books")) == 3 + 30 + 160


def test_a_connector_paced_to_the_rate_limit_meets_it_without_a_429(lib: Harness) -> None:
    """1,100 creates at 5 requests a second: 11 requests, spread over at least 2 windows."""
    lib.setup_library()
    authors = _authors("r", 1100)
    lib.write_many(authors)
    connector = {"type": "sandbox", "base_url": lib.sandbox_url, "requests_per_second": 5}
    lib.app.change_connector(lib.workspace, connector)
    lib.set_faults(rate_limit=5, rate_window_s=1)
    pipeline = _plan_and_request(lib)
    assert _estimated_calls(pipeline) == {Phase.CREATE: 11}

    started = time.monotonic()
    done, counted = _run(lib, pipeline)
    took = time.monotonic() - started

    assert done.state == "completed", done.counts()
    assert counted["rate_limited"] == 0
    assert counted["requests"] == counted["bulk_creates"] == 11
    # the sandbox let through at most 5 in any second, so the 11th came 2 windows after the 1st
    assert took >= math.ceil(counted["requests"] / 5) - 1
    lib.set_faults()
    _check_records(lib, authors, done.created_record_ids())
