"""Waves and batches: how a phase's entries become as few requests as the limits allow."""

from __future__ import annotations

import uuid

import pytest

from domain.calls import BatchLimits, calls_per_phase, group_calls, waves
from domain.cycles import cycle_breaking_fields
from domain.entries import EntryStatus, PipelineEntry
from domain.plan import Phase

PIPELINE = str(uuid.uuid4())


def create(path: str, *depends: str) -> PipelineEntry:
    folder = path.split("/")[0]
    op = {"type": "create", "folder": folder, "fields": {}}
    return PipelineEntry(path, Phase.CREATE, op, [], [f"create:{d}" for d in depends], {})


def test_a_create_goes_one_wave_after_the_deepest_create_it_points_at() -> None:
    entries = [
        create("authors/a.json"),
        create("books/b.json", "authors/a.json"),
        create("reviews/r.json", "books/b.json", "authors/a.json"),
        create("tags/t.json"),
    ]
    assert waves(entries) == {
        "create:authors/a.json": 0,
        "create:books/b.json": 1,
        "create:reviews/r.json": 2,
        "create:tags/t.json": 0,
    }


def test_waves_of_a_long_chain_need_no_recursion() -> None:
    chain = [create("authors/a0.json")] + [
        create(f"authors/a{n}.json", f"authors/a{n - 1}.json") for n in range(1, 5000)
    ]
    assert waves(chain)["create:authors/a4999.json"] == 4999


def test_dependencies_in_a_cycle_are_refused() -> None:
    with pytest.raises(ValueError, match="cycle"):
        waves([create("authors/a.json", "books/b.json"), create("books/b.json", "authors/a.json")])


def test_batches_are_per_folder_and_wave_and_cut_at_the_limit() -> None:
    authors = [create(f"authors/a{n:03}.json") for n in range(250)]
    books = [create(f"books/b{n:03}.json", f"authors/a{n:03}.json") for n in range(120)]
    calls = group_calls(PIPELINE, 0, Phase.CREATE, authors + books, BatchLimits(create=100))
    assert [[(c.folder, len(c.keys)) for c in wave] for wave in calls] == [
        [("authors", 100), ("authors", 100), ("authors", 50)],
        [("books", 100), ("books", 20)],
    ]
    assert calls_per_phase(PIPELINE, authors + books, BatchLimits(create=100)) == {Phase.CREATE: 5}
    keys = [c.idempotency_key for wave in calls for c in wave]
    assert len(set(keys)) == len(keys)


def test_published_entries_leave_their_batch_and_dispatched_ones_keep_theirs() -> None:
    entries = [create(f"authors/a{n}.json") for n in range(5)]
    entries[0].status = EntryStatus.PUBLISHED
    entries[1].status = entries[2].status = EntryStatus.DISPATCHED
    entries[1].idempotency_key = entries[2].idempotency_key = "sent-before"
    [wave] = group_calls(PIPELINE, 0, Phase.CREATE, entries, BatchLimits(create=100))
    assert [(c.idempotency_key, len(c.keys)) for c in wave] == [
        ("sent-before", 2),
        (wave[1].idempotency_key, 2),
    ]


def test_a_two_record_cycle_cuts_the_field_of_the_less_pointed_at_folder() -> None:
    graph = {
        "authors/a.json": {"featured": frozenset({"books/b.json"})},
        "books/b.json": {"author": frozenset({"authors/a.json"})},
        "books/c.json": {"author": frozenset({"authors/a.json"})},
    }
    assert cycle_breaking_fields(graph) == {"authors/a.json": frozenset({"featured"})}


def test_only_fields_on_a_cycle_are_cut_and_a_self_pointer_is_one() -> None:
    graph = {
        "authors/a.json": {"mentor": frozenset({"authors/a.json"}), "x": frozenset()},
        "authors/b.json": {"mentor": frozenset({"authors/a.json"})},
        "authors/c.json": {"next": frozenset({"authors/d.json"})},
        "authors/d.json": {"next": frozenset({"authors/e.json"})},
        "authors/e.json": {"next": frozenset({"authors/c.json"})},
    }
    cut = cycle_breaking_fields(graph)
    assert cut["authors/a.json"] == frozenset({"mentor"})
    assert "authors/b.json" not in cut
    assert sum(len(f) for p, f in cut.items() if p != "authors/a.json") == 1  # one per cycle


def test_a_live_webflow_delete_counts_its_two_requests() -> None:
    from domain.connector_config import batch_limits

    deletes = [
        PipelineEntry(
            f"books/d{n}.json",
            Phase.DELETE,
            {"type": "delete", "folder": "books", "record_id": f"r{n}", "page": 0},
            [],
            [],
            {},
        )
        for n in range(3)
    ]
    live = batch_limits({"type": "webflow", "live": True})
    staged = batch_limits({"type": "webflow", "live": False})
    assert calls_per_phase(PIPELINE, deletes, live) == {Phase.DELETE: 2}
    assert calls_per_phase(PIPELINE, deletes, staged) == {Phase.DELETE: 1}
