"""Runs against the sandbox over HTTP, checked on the sandbox's own records."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from domain.errors import PublishInProgress, StalePlan
from infrastructure.postgres.database import Database
from tests.support.publishing import Harness, harness

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def lib(database: Database, schema: str) -> Iterator[Harness]:
    with harness(database, schema) as h:
        yield h


def test_all_four_phases_with_a_cycle_a_multiple_clearing_and_an_edit(lib: Harness) -> None:
    ids = lib.setup_library()
    old = lib.main("books/old-man.json")
    assert old is not None
    lib.write("books/old-man.json", {**old, "title": "Old Man (revised)"})
    lib.write(
        "books/war-and-peace.json",
        {"title": "War and Peace", "slug": "war-and-peace", "author": "@/authors/tolstoy.json"},
    )
    lib.write(
        "authors/tolstoy.json",
        {"name": "Tolstoy", "slug": "tolstoy", "favourite_book": "@/books/war-and-peace.json"},
    )
    lib.delete("books/dalloway.json")

    pipeline = lib.plan_and_run()

    assert pipeline.state == "completed", pipeline.counts()
    assert pipeline.phases == ["edit", "create", "delete", "backfill"]
    tolstoy = lib.item_by("authors", "name", "Tolstoy")
    war = lib.item_by("books", "title", "War and Peace")
    assert war["fieldData"]["author"] == tolstoy["id"]
    assert tolstoy["fieldData"]["favourite_book"] == war["id"]
    assert lib.item_by("books", "slug", "old-man")["fieldData"]["title"] == "Old Man (revised)"
    assert ids["dalloway"] not in {b["id"] for b in lib.items("books")}
    assert lib.item_by("menus", "slug", "main")["fieldData"]["items"] == [
        ids["oldman"],
        ids["lighthouse"],
    ]
    assert len(lib.items("books")) == 3 and len(lib.items("authors")) == 3
    # main mirrors the canonical records; the draft is empty; the lock is free
    assert lib.main("books/war-and-peace.json")["author"] == tolstoy["id"]  # type: ignore[index]
    assert lib.main("books/dalloway.json") is None
    assert lib.queries.draft_changes("lib", "alice")["changes"] == []
    assert lib.app.workspace("lib").publishing is None


def test_an_edit_pointing_at_a_record_created_in_the_same_pipeline(lib: Harness) -> None:
    lib.setup_library()
    old = lib.main("books/old-man.json")
    assert old is not None
    lib.write("books/old-man.json", {**old, "author": "@/authors/santiago.json"})
    lib.write("authors/santiago.json", {"name": "Santiago", "slug": "santiago"})

    pipeline = lib.plan_and_run()

    assert pipeline.state == "completed"
    assert pipeline.phases == ["create", "backfill"]
    santiago = lib.item_by("authors", "name", "Santiago")
    assert lib.item_by("books", "slug", "old-man")["fieldData"]["author"] == santiago["id"]


def test_deleting_a_record_referenced_by_unchanged_files_single_and_multiple(lib: Harness) -> None:
    ids = lib.setup_library()
    lib.delete("authors/woolf.json")
    lib.delete("books/lighthouse.json")

    pipeline = lib.plan_and_run()

    assert pipeline.state == "completed", pipeline.counts()
    assert pipeline.phases == ["edit", "delete"]
    assert {a["id"] for a in lib.items("authors")} == {ids["hemingway"]}
    assert lib.item_by("books", "slug", "dalloway")["fieldData"]["author"] is None
    assert lib.item_by("menus", "slug", "main")["fieldData"]["items"] == [
        ids["oldman"],
        ids["dalloway"],
    ]


def test_a_rejected_entry_fails_alone_and_its_dependents_are_skipped(lib: Harness) -> None:
    lib.setup_library()
    lib.write(
        "authors/tolstoy.json",
        {"name": "Tolstoy", "slug": "tolstoy", "favourite_book": "@/books/war-and-peace.json"},
    )
    # a resolved id to nothing: the sandbox answers 400 for this create
    lib.write(
        "books/war-and-peace.json",
        {"title": "War and Peace", "slug": "war-and-peace", "author": "no-such-author"},
    )
    lib.write("books/anna.json", {"title": "Anna Karenina", "slug": "anna"})

    pipeline = lib.plan_and_run()

    assert pipeline.state == "completed_with_errors"
    entries = {(e.phase, e.path): e for e in pipeline.entries.values()}
    assert entries[("create", "books/war-and-peace.json")].status == "failed"
    # the two books went out in one request; the service refused it for War and Peace
    # alone, and Anna went out again on her own
    assert entries[("create", "books/anna.json")].status == "published"
    assert "author" in str(entries[("create", "books/war-and-peace.json")].error)
    # Tolstoy waits for his favourite book (a wave later), so he is skipped, not half made
    assert entries[("create", "authors/tolstoy.json")].status == "skipped"
    skipped = entries[("create", "authors/tolstoy.json")].error
    assert skipped is not None and "create:books/war-and-peace.json" in skipped
    assert ("backfill", "authors/tolstoy.json") not in entries  # no cycle: nothing deferred
    changes = {c["path"]: c["change"] for c in lib.queries.draft_changes("lib", "alice")["changes"]}
    assert changes == {"books/war-and-peace.json": "added", "authors/tolstoy.json": "added"}
    assert lib.app.workspace("lib").publishing is None


def test_an_outage_fails_the_run_and_a_resume_completes_it(lib: Harness) -> None:
    lib.setup_library()
    for n in range(5):
        lib.write(f"authors/a{n}.json", {"name": f"Author {n}", "slug": f"a{n}"})
    pipeline = lib.app.plan("lib", "alice")
    lib.app.request_run(pipeline.pipeline_id)
    lib.set_faults(outage=True)

    failed = lib.run(pipeline.pipeline_id)

    assert failed.state == "failed"
    assert failed.error
    assert lib.app.workspace("lib").publishing is None
    lib.set_faults(outage=False)
    lib.app.request_run(pipeline.pipeline_id)
    resumed = lib.run(pipeline.pipeline_id)
    assert resumed.state == "completed"
    names = sorted(a["fieldData"]["name"] for a in lib.items("authors"))
    assert names == sorted(["Hemingway", "Woolf"] + [f"Author {n}" for n in range(5)])


def test_cancel_mid_phase_stops_dispatching_and_records_what_was_sent(lib: Harness) -> None:
    """Ten batches of 100 creates, one at a time: a cancel after the first stops the rest.

    Intents run at most two calls ahead (``runner.WINDOWS_AHEAD``) of the
    outcomes, and the run sees the cancel at its next save.
    """
    lib.setup_library()
    total = 1000
    for n in range(total):
        lib.write(f"authors/c{n:03}.json", {"name": f"C{n}", "slug": f"c{n}"})
    lib.set_faults(latency_ms=100)
    pipeline = lib.app.plan("lib", "alice")
    lib.app.request_run(pipeline.pipeline_id)

    async def run_and_cancel() -> None:
        worker = lib.runtime.worker()
        worker.concurrency = 1
        task = asyncio.create_task(worker.run_one(pipeline.pipeline_id))
        while True:  # cancel once the first batch is published
            current = await asyncio.to_thread(lib.app.pipeline, pipeline.pipeline_id)
            if current.phase_counts("create")["published"] >= 100:
                break
            await asyncio.sleep(0.01)
        await asyncio.to_thread(lib.app.request_cancel, pipeline.pipeline_id)
        await task
        await lib.runtime.aclose_connectors()

    asyncio.run(run_and_cancel())
    cancelled = lib.app.pipeline(pipeline.pipeline_id)
    assert cancelled.state == "cancelled"
    published = cancelled.phase_counts("create")["published"]
    assert published % 100 == 0 and 100 <= published < total  # whole batches; not all sent
    assert int(lib.sandbox("GET", "/collections/authors/items?limit=1")["total"]) == 2 + published
    assert lib.app.workspace("lib").publishing is None


def test_stale_when_main_moved_and_when_the_draft_moved(lib: Harness) -> None:
    lib.setup_library()
    lib.write("authors/new.json", {"name": "New", "slug": "new"})
    first = lib.app.plan("lib", "alice")
    lib.write("authors/other.json", {"name": "Other", "slug": "other"})
    with pytest.raises(StalePlan):
        lib.app.request_run(first.pipeline_id)
    assert lib.app.pipeline(first.pipeline_id).state == "stale"

    second = lib.app.plan("lib", "alice")
    lib.create_item("authors", {"name": "Upstream", "slug": "upstream"})
    lib.pull()
    with pytest.raises(StalePlan):
        lib.app.request_run(second.pipeline_id)
    assert lib.app.pipeline(second.pipeline_id).state == "stale"
    assert len(lib.items("authors")) == 3  # nothing was sent


def test_two_runs_on_one_workspace_exactly_one_proceeds(lib: Harness) -> None:
    lib.setup_library()
    lib.write("authors/x.json", {"name": "X", "slug": "x"}, user="alice")
    lib.write("authors/y.json", {"name": "Y", "slug": "y"}, user="bob")
    a = lib.app.plan("lib", "alice")
    b = lib.app.plan("lib", "bob")
    lib.app.request_run(a.pipeline_id)
    with pytest.raises(PublishInProgress):
        lib.app.request_run(b.pipeline_id)
    assert lib.run(a.pipeline_id).state == "completed"
    # b's plan is stale now (main moved), and says so
    with pytest.raises(StalePlan):
        lib.app.request_run(b.pipeline_id)


def test_lost_responses_and_429s_complete_without_duplicates(
    database: Database, schema: str
) -> None:
    with harness(database, schema) as lib:
        lib.setup_library()
        for n in range(30):
            lib.write(f"authors/f{n}.json", {"name": f"F{n}", "slug": f"f{n}"})
        for n in range(10):
            lib.write(
                f"books/g{n}.json",
                {"title": f"G{n}", "slug": f"g{n}", "author": f"@/authors/f{n}.json"},
            )
        lib.set_faults(lost_response_rate=0.10, rate_limit_429_rate=0.05, retry_after_s=0, seed=7)

        pipeline = lib.plan_and_run()

        assert pipeline.state == "completed", pipeline.counts()
        names = [a["fieldData"]["name"] for a in lib.items("authors")]
        assert len(names) == len(set(names)) == 32
        titles = [b["fieldData"]["title"] for b in lib.items("books")]
        assert len(titles) == len(set(titles)) == 13
        stats = lib.sandbox("GET", "/_admin/stats")
        assert stats.get("lost_response", 0) + stats.get("lost_responses", 0) > 0
