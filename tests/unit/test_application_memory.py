"""Plan, run, stale, retry and cancel on the in-memory event store and views.

Every part is the product's (commands, planner, worker, run engine, the pure
projections behind ``MemoryViews``) except the content service, a
``CheckingConnector``. No database, no HTTP: each test runs in milliseconds.
What they assert is what a client sees: the pipeline's status and entries in
the views, main's files, the service's records.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from domain.errors import IllegalTransition, StalePlan
from tests.support.library import USER, WORKSPACE, Library, memory_app

PLANNED = {"planned": 1, "published": 0, "failed": 0, "skipped": 0}
PUBLISHED = {"planned": 0, "published": 1, "failed": 0, "skipped": 0}


@pytest.fixture
def library() -> Iterator[Library]:
    library = Library(memory_app())
    library.setup()
    yield library
    assert library.connector.unannounced == [], "a call went out before its intent was stored"


def status(library: Library, pipeline_id: str) -> dict[str, Any]:
    found = library.app.views.pipeline_status(pipeline_id)
    assert found is not None
    return found


def entries(library: Library, pipeline_id: str) -> list[tuple[str, str, str]]:
    return [
        (e["phase"], e["path"], e["status"])
        for e in library.app.views.pipeline_entries(pipeline_id)
    ]


def main(library: Library, folder: str) -> dict[str, Any]:
    """Main's files of a folder by filename, as the views hold them."""
    index = library.app.views.main_folder_index(WORKSPACE, folder)
    return {filename: content for filename, content in index.values()}


def test_plan_then_run_publishes_all_four_phases(library: Library) -> None:
    library.write_four_phases()
    pipeline = library.plan()
    planned = status(library, pipeline.pipeline_id)
    assert (planned["state"], planned["phase"], planned["started_at"]) == ("planned", None, None)
    assert planned["counts"] == {
        "edit": PLANNED,
        "create": {**PLANNED, "planned": 2},
        "delete": PLANNED,
        "backfill": PLANNED,
    }
    assert entries(library, pipeline.pipeline_id) == [
        ("edit", "books/old-man.json", "planned"),
        ("create", "authors/tolstoy.json", "planned"),
        ("create", "books/war.json", "planned"),
        ("delete", "books/dalloway.json", "planned"),
        ("backfill", "authors/tolstoy.json", "planned"),
    ]

    library.app.request_run(pipeline.pipeline_id)
    assert library.app.views.runnable_pipelines() == [pipeline.pipeline_id]
    assert library.run(pipeline.pipeline_id) == "completed"

    done = status(library, pipeline.pipeline_id)
    assert (done["state"], done["phase"], done["errors"]) == ("completed", "backfill", [])
    assert done["counts"] == {
        "edit": PUBLISHED,
        "create": {**PUBLISHED, "published": 2},
        "delete": PUBLISHED,
        "backfill": PUBLISHED,
    }
    assert done["created_at"] <= done["started_at"] <= done["finished_at"]
    assert {e[2] for e in entries(library, pipeline.pipeline_id)} == {"published"}
    assert library.app.views.runnable_pipelines() == []
    # main follows the service: the edit, the two new records (the backfill resolved
    # War's author to Tolstoy's new id), Dalloway gone
    tolstoy = main(library, "authors")["tolstoy.json"]["id"]
    books = main(library, "books")
    assert set(books) == {"old-man.json", "war.json"}
    assert books["old-man.json"]["title"] == "The Old Man"
    assert books["war.json"]["author"] == tolstoy
    assert library.connector.records["books"][books["war.json"]["id"]].field_data == {
        "title": "War",
        "slug": "war",
        "author": tolstoy,
    }
    assert "b2" not in library.connector.records["books"]
    # the service heard once, at the end, which records the run created or updated
    assert library.connector.finished == [
        {"authors": [tolstoy], "books": sorted(["b1", books["war.json"]["id"]])}
    ]
    assert library.app.views.draft_files(WORKSPACE, USER) == {}  # rebased onto main
    assert library.app.workspace(WORKSPACE).publishing is None


def test_a_draft_write_after_planning_makes_the_plan_stale(library: Library) -> None:
    library.write("authors/tolstoy.json", {"name": "Tolstoy", "slug": "tolstoy"})
    pipeline = library.plan()
    library.write("authors/tolstoy.json", {"name": "Leo Tolstoy", "slug": "tolstoy"})

    with pytest.raises(StalePlan, match="the draft moved"):
        library.app.request_run(pipeline.pipeline_id)

    stale = status(library, pipeline.pipeline_id)
    assert stale["state"] == "stale" and stale["finished_at"] is not None
    assert [(e["path"], e["phase"]) for e in stale["errors"]] == [(None, None)]
    assert "the draft moved" in stale["errors"][0]["message"]
    assert library.app.views.runnable_pipelines() == []
    assert library.connector.calls == []
    assert library.app.workspace(WORKSPACE).publishing is None


def test_main_moving_after_planning_makes_the_plan_stale(library: Library) -> None:
    library.write("authors/tolstoy.json", {"name": "Tolstoy", "slug": "tolstoy"})
    pipeline = library.plan()
    library.connector.seed("authors", "a3", {"name": "Austen", "slug": "austen"})
    library.pull()  # main moves under the plan
    assert "austen.json" in main(library, "authors")

    with pytest.raises(StalePlan, match="main moved"):
        library.app.request_run(pipeline.pipeline_id)

    assert status(library, pipeline.pipeline_id)["state"] == "stale"
    assert library.connector.calls == []


def test_a_backfill_is_skipped_when_its_create_failed(library: Library) -> None:
    library.write_four_phases()
    library.connector.refuse = lambda folder, fields: (
        "400 title is taken" if fields.get("title") == "War" else None
    )

    pipeline_id, state = library.plan_and_run()

    assert state == "completed_with_errors"
    assert entries(library, pipeline_id) == [
        ("edit", "books/old-man.json", "published"),
        ("create", "authors/tolstoy.json", "published"),
        ("create", "books/war.json", "failed"),
        ("delete", "books/dalloway.json", "published"),
        ("backfill", "authors/tolstoy.json", "skipped"),
    ]
    done = status(library, pipeline_id)
    assert done["errors"] == [
        {
            "path": "books/war.json",
            "phase": "create",
            "message": "400 title is taken",
            "code": "rejected",
            "details": None,
        },
        {
            "path": "authors/tolstoy.json",
            "phase": "backfill",
            "message": "depends on create:books/war.json, which failed",
            "code": "skipped_dependency",
            "details": None,
        },
    ]
    assert done["counts"]["backfill"] == {"planned": 0, "published": 0, "failed": 0, "skipped": 1}
    assert len(library.connector.calls) == 4  # the skipped backfill never went out
    assert "war.json" not in main(library, "books")


def test_retry_after_an_entry_failed_publishes_what_is_left(library: Library) -> None:
    library.write_four_phases()
    library.connector.refuse = lambda folder, fields: (
        "503 try later" if fields.get("title") == "War" else None
    )
    pipeline_id, state = library.plan_and_run()
    assert state == "completed_with_errors"
    calls = len(library.connector.calls)

    library.connector.refuse = lambda folder, fields: None
    library.app.request_retry(pipeline_id)
    retrying = status(library, pipeline_id)
    assert (retrying["state"], retrying["errors"], retrying["finished_at"]) == (
        "running",
        [],
        None,
    )
    assert retrying["counts"]["create"] == {"planned": 1, "published": 1, "failed": 0, "skipped": 0}
    assert library.app.views.pipeline_entries(pipeline_id, status="planned") == [
        {
            "path": "books/war.json",
            "phase": "create",
            "status": "planned",
            "record_id": None,
            "error": None,
        },
        {
            "path": "authors/tolstoy.json",
            "phase": "backfill",
            "status": "planned",
            "record_id": None,
            "error": None,
        },
    ]

    assert library.run(pipeline_id) == "completed"
    assert len(library.connector.calls) == calls + 2  # only the create and its backfill
    done = status(library, pipeline_id)
    assert done["state"] == "completed" and done["errors"] == []
    assert {e[2] for e in entries(library, pipeline_id)} == {"published"}
    assert (
        main(library, "books")["war.json"]["author"]
        == main(library, "authors")["tolstoy.json"]["id"]
    )


def test_cancel_before_the_run(library: Library) -> None:
    library.write("authors/tolstoy.json", {"name": "Tolstoy", "slug": "tolstoy"})
    never_queued = library.plan()
    library.app.request_cancel(never_queued.pipeline_id)
    assert status(library, never_queued.pipeline_id)["state"] == "cancelled"
    with pytest.raises(IllegalTransition):
        library.app.request_run(never_queued.pipeline_id)

    queued = library.plan()
    library.app.request_run(queued.pipeline_id)
    library.app.request_cancel(queued.pipeline_id)
    assert status(library, queued.pipeline_id)["cancel_requested"] is True

    assert library.run(queued.pipeline_id) == "cancelled"
    cancelled = status(library, queued.pipeline_id)
    assert (cancelled["state"], cancelled["cancel_requested"]) == ("cancelled", False)
    assert entries(library, queued.pipeline_id) == [("create", "authors/tolstoy.json", "planned")]
    assert library.connector.calls == []
    assert library.app.workspace(WORKSPACE).publishing is None


def test_cancel_during_the_run_stops_sending(library: Library) -> None:
    books = 12
    for n in range(books):
        library.write(f"books/b{n:02}.json", {"title": f"Book {n}", "slug": f"b{n:02}"})
    library.concurrency = 1
    pipeline = library.plan()
    library.app.request_run(pipeline.pipeline_id)

    def cancel_on_first_call(idempotency_key: str) -> None:
        if len(library.connector.calls) == 1:
            library.app.request_cancel(pipeline.pipeline_id)

    library.connector.on_call = cancel_on_first_call

    assert library.run(pipeline.pipeline_id) == "cancelled"
    sent = len(library.connector.calls)
    assert 1 <= sent < books  # calls already recorded as intents still went out
    cancelled = status(library, pipeline.pipeline_id)
    assert cancelled["state"] == "cancelled"
    assert cancelled["counts"]["create"] == {
        "planned": books - sent,
        "published": sent,
        "failed": 0,
        "skipped": 0,
    }
    assert len(main(library, "books")) == 2 + sent
    assert library.app.workspace(WORKSPACE).publishing is None
