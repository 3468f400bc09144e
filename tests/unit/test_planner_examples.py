"""The planner on hand-written drafts: the prototype's table and the cases it got wrong."""

from __future__ import annotations

from typing import Any

import pytest

from domain.errors import (
    DanglingReferences,
    InvalidContent,
    InvalidPath,
    NothingToPublish,
    UnknownFolder,
)
from domain.plan import Plan, PlanEntry
from domain.planner import plan
from fixtures.planner import InMemoryInputs, library_schemas

SCHEMAS = library_schemas()


def main_files() -> dict[str, dict[str, Any]]:
    return {
        "authors/hemingway.json": {"id": "a1", "name": "Hemingway", "favourite": "b1"},
        "books/old-man.json": {
            "id": "b1",
            "title": "The Old Man and the Sea",
            "author": "a1",
            "tags": ["t1", "t2"],
            "createdOn": "2024-01-01",
        },
        "tags/sea.json": {"id": "t1", "label": "sea"},
        "tags/war.json": {"id": "t2", "label": "war"},
    }


def run(draft: dict[str, Any], main: dict[str, Any] | None = None, **kwargs: Any) -> Plan:
    return plan(draft, SCHEMAS, InMemoryInputs(main or main_files(), SCHEMAS), **kwargs)


def shape(result: Plan) -> list[tuple[str, str]]:
    return [(e.phase, e.path) for e in result.entries]


def entry(result: Plan, phase: str, path: str) -> PlanEntry:
    return next(e for e in result.entries if (e.phase, e.path) == (phase, path))


def old_man(**changes: Any) -> dict[str, Any]:
    return main_files()["books/old-man.json"] | changes


# --- the prototype's table -------------------------------------------------


def test_edit_only_sends_only_the_changed_field() -> None:
    result = run({"books/old-man.json": old_man(title="The Old Man")})

    assert shape(result) == [("edit", "books/old-man.json")]
    assert result.entries[0].operation == {
        "type": "update",
        "folder": "books",
        "record_id": "b1",
        "fields": {"title": "The Old Man"},
    }
    assert result.phases() == [{"phase": "edit", "entries": 1}]


def test_a_field_changed_from_1_to_true_is_an_edit() -> None:
    main = main_files() | {"books/old-man.json": old_man(inPrint=1, flags=[0])}
    result = run({"books/old-man.json": old_man(inPrint=True, flags=[False])}, main)

    assert shape(result) == [("edit", "books/old-man.json")]
    assert result.entries[0].operation["fields"] == {"inPrint": True, "flags": [False]}
    with pytest.raises(NothingToPublish):
        run({"books/old-man.json": old_man(inPrint=1.0, flags=[0])}, main)


def test_create_only() -> None:
    result = run({"tags/love.json": {"label": "love", "createdOn": "x", "id": "ignored"}})

    assert shape(result) == [("create", "tags/love.json")]
    assert result.entries[0].operation == {
        "type": "create",
        "folder": "tags",
        "fields": {"label": "love"},
    }
    assert result.entries[0].deferred_fields == ()


def test_delete_with_inbound_references_clears_them_first() -> None:
    result = run({"authors/hemingway.json": None})

    assert shape(result) == [("edit", "books/old-man.json"), ("delete", "authors/hemingway.json")]
    assert entry(result, "edit", "books/old-man.json").operation["fields"] == {"author": None}
    delete = entry(result, "delete", "authors/hemingway.json")
    assert delete.operation == {"type": "delete", "folder": "authors", "record_id": "a1", "page": 0}
    assert delete.depends_on == ("edit:books/old-man.json",)


def test_delete_without_inbound_references_is_one_phase() -> None:
    main = main_files() | {"tags/lonely.json": {"id": "t9", "label": "lonely"}}
    result = run({"tags/lonely.json": None}, main)

    assert shape(result) == [("delete", "tags/lonely.json")]
    assert result.entries[0].depends_on == ()


def test_creates_with_a_cycle_defer_one_field_and_go_out_in_waves() -> None:
    result = run(
        {
            "books/new.json": {"title": "New", "author": "@/authors/new.json", "tags": ["t1"]},
            "authors/new.json": {"name": "Newcomer", "favourite": "@/books/new.json"},
        }
    )

    assert shape(result) == [
        ("create", "authors/new.json"),
        ("create", "books/new.json"),
        ("backfill", "authors/new.json"),
    ]
    author = entry(result, "create", "authors/new.json")
    assert author.operation["fields"] == {"name": "Newcomer"}
    assert author.deferred_fields == ("favourite",)
    assert author.depends_on == ()
    book = entry(result, "create", "books/new.json")
    assert book.operation["fields"] == {
        "title": "New",
        "author": "@/authors/new.json",
        "tags": ["t1"],
    }
    assert book.deferred_fields == ()
    assert book.depends_on == ("create:authors/new.json",)
    backfill = entry(result, "backfill", "authors/new.json")
    assert backfill.operation == {
        "type": "update",
        "folder": "authors",
        "record_id": None,
        "fields": {"favourite": "@/books/new.json"},
    }
    assert backfill.depends_on == ("create:authors/new.json", "create:books/new.json")


def test_a_chain_of_new_records_needs_no_backfill() -> None:
    result = run(
        {
            "books/new.json": {"title": "New", "author": "@/authors/new.json"},
            "authors/new.json": {"name": "Newcomer"},
        }
    )

    assert shape(result) == [("create", "authors/new.json"), ("create", "books/new.json")]
    assert entry(result, "create", "books/new.json").operation["fields"]["author"] == (
        "@/authors/new.json"
    )


def test_a_record_pointing_at_itself_defers_that_field() -> None:
    result = run({"authors/new.json": {"name": "N", "favourite": "@/authors/new.json"}})

    assert shape(result) == [("create", "authors/new.json"), ("backfill", "authors/new.json")]
    assert entry(result, "create", "authors/new.json").deferred_fields == ("favourite",)


def test_mixed_draft_with_cycles_uses_all_four_phases_in_order() -> None:
    result = run(
        {
            "books/old-man.json": old_man(title="Renamed"),
            "books/new.json": {"title": "New", "author": "@/authors/new.json"},
            "authors/new.json": {"name": "Newcomer", "favourite": "@/books/new.json"},
            "tags/sea.json": None,
        }
    )

    assert [p["phase"] for p in result.phases()] == ["edit", "create", "delete", "backfill"]
    assert shape(result) == [
        ("edit", "books/old-man.json"),
        ("create", "authors/new.json"),
        ("create", "books/new.json"),
        ("delete", "tags/sea.json"),
        ("backfill", "authors/new.json"),
    ]
    edit = entry(result, "edit", "books/old-man.json")
    assert edit.operation["fields"] == {"title": "Renamed", "tags": ["t2"]}
    assert entry(result, "delete", "tags/sea.json").depends_on == ("edit:books/old-man.json",)


# --- what the prototype got wrong or left out -------------------------------


def test_edit_pointing_at_a_file_created_in_the_same_draft_is_one_backfill() -> None:
    result = run(
        {
            "books/old-man.json": old_man(title="T", author="@/authors/new.json"),
            "authors/new.json": {"name": "Newcomer"},
        }
    )

    assert shape(result) == [("create", "authors/new.json"), ("backfill", "books/old-man.json")]
    backfill = entry(result, "backfill", "books/old-man.json")
    assert backfill.operation == {
        "type": "update",
        "folder": "books",
        "record_id": "b1",
        "fields": {"title": "T", "author": "@/authors/new.json"},
    }
    assert backfill.before == {"title": "The Old Man and the Sea", "author": "a1"}
    assert backfill.depends_on == ("create:authors/new.json",)


def test_edit_whose_only_change_points_at_a_new_file_is_only_a_backfill() -> None:
    result = run(
        {
            "books/old-man.json": old_man(author="@/authors/new.json"),
            "authors/new.json": {"name": "Newcomer"},
        }
    )

    assert shape(result) == [("create", "authors/new.json"), ("backfill", "books/old-man.json")]


def test_repointing_from_a_deleted_to_a_created_record_clears_it_before_the_delete() -> None:
    # The old value blocks the delete and the new one can't be sent yet: the
    # edit sends null, the backfill the new pointer.
    result = run(
        {
            "books/old-man.json": old_man(author="@/authors/new.json"),
            "authors/new.json": {"name": "Newcomer"},
            "authors/hemingway.json": None,
        }
    )

    edit = entry(result, "edit", "books/old-man.json")
    assert edit.operation["fields"] == {"author": None}
    assert edit.deferred_fields == ("author",)
    assert entry(result, "backfill", "books/old-man.json").operation["fields"] == {
        "author": "@/authors/new.json"
    }
    assert entry(result, "delete", "authors/hemingway.json").depends_on == (
        "edit:books/old-man.json",
    )


def test_multiple_reference_loses_only_the_deleted_element() -> None:
    result = run({"tags/war.json": None})

    assert entry(result, "edit", "books/old-man.json").operation["fields"] == {"tags": ["t1"]}


def test_file_both_edited_and_cleared_is_one_entry() -> None:
    result = run({"books/old-man.json": old_man(title="T"), "tags/sea.json": None})

    edits = [e for e in result.entries if e.phase == "edit"]
    assert len(edits) == 1
    assert edits[0].operation["fields"] == {"title": "T", "tags": ["t2"]}


def test_added_file_pointing_at_a_deleted_file_is_created_without_the_pointer() -> None:
    result = run(
        {
            "books/new.json": {
                "title": "New",
                "author": "@/authors/hemingway.json",
                "tags": ["@/tags/sea.json", "@/tags/war.json"],
                "notes": {"see": "@/tags/sea.json", "also": ["@/tags/sea.json", "x"]},
            },
            "authors/hemingway.json": None,
            "tags/sea.json": None,
        }
    )

    create = entry(result, "create", "books/new.json")
    assert create.operation["fields"] == {
        "title": "New",
        "author": None,
        "tags": ["@/tags/war.json"],
        "notes": {"see": None, "also": ["x"]},
    }
    assert create.deferred_fields == ()


def test_cleared_pointer_next_to_a_new_one_stays_cleared_in_the_create() -> None:
    result = run(
        {
            "books/new.json": {"title": "N", "tags": ["@/tags/new.json", "@/tags/sea.json"]},
            "tags/new.json": {"label": "new"},
            "tags/sea.json": None,
        }
    )

    create = entry(result, "create", "books/new.json")
    assert create.operation["fields"] == {"title": "N", "tags": ["@/tags/new.json"]}
    assert create.depends_on == ("create:tags/new.json",)


def test_dangling_references_are_all_listed() -> None:
    with pytest.raises(DanglingReferences) as caught:
        run(
            {
                "books/new.json": {
                    "author": "@/authors/ghost.json",
                    "tags": ["t1", "@/tags/nowhere.json"],
                    "notes": {"deep": ["@/books/missing.json"]},
                },
                "books/old-man.json": old_man(author="@/authors/ghost.json"),
                "authors/gone.json": None,  # deleted in the draft but not on main
                "authors/new.json": {"name": "N", "favourite": "@/authors/gone.json"},
            }
        )

    assert caught.value.code == "dangling_references"
    assert caught.value.details == [
        {"source": "authors/new.json", "field": "favourite", "target": "authors/gone.json"},
        {"source": "books/new.json", "field": "author", "target": "authors/ghost.json"},
        {"source": "books/new.json", "field": "notes.deep.0", "target": "books/missing.json"},
        {"source": "books/new.json", "field": "tags.1", "target": "tags/nowhere.json"},
        {"source": "books/old-man.json", "field": "author", "target": "authors/ghost.json"},
    ]


def test_malformed_at_reference_is_dangling() -> None:
    with pytest.raises(DanglingReferences) as caught:
        run({"tags/x.json": {"label": "@/no-folder.json"}})

    assert caught.value.details == [
        {"source": "tags/x.json", "field": "label", "target": "no-folder.json"}
    ]


@pytest.mark.parametrize(
    "draft",
    [
        {},
        {"books/old-man.json": old_man()},
        {"tags/never-existed.json": None},
        {"books/old-man.json": old_man(createdOn="2030-01-01", id="other")},
        {"books/old-man.json": old_man(author="@/authors/hemingway.json")},
        {"books/old-man.json": old_man(tags=["@/tags/sea.json", "t2"])},
    ],
    ids=["empty", "unchanged", "delete-of-nothing", "read-only-and-id", "ref-vs-id", "ref-in-list"],
)
def test_nothing_to_publish(draft: dict[str, Any]) -> None:
    with pytest.raises(NothingToPublish) as caught:
        run(draft)
    assert caught.value.code == "nothing_to_publish"


def test_field_missing_in_the_draft_is_sent_as_null() -> None:
    draft = old_man()
    del draft["tags"]
    result = run({"books/old-man.json": draft})

    assert result.entries[0].operation["fields"] == {"tags": None}


def test_null_on_main_and_absent_in_the_draft_is_no_change() -> None:
    main = main_files()
    main["tags/sea.json"]["colour"] = None
    with pytest.raises(NothingToPublish):
        run({"tags/sea.json": {"id": "t1", "label": "sea"}}, main)
    with pytest.raises(NothingToPublish):
        run({"tags/war.json": {"id": "t2", "label": "war", "colour": None}}, main)


def test_changed_field_keeps_its_at_references_for_the_runner_to_resolve() -> None:
    result = run({"books/old-man.json": old_man(author="@/authors/hemingway.json", title="T")})

    assert result.entries[0].operation["fields"] == {"title": "T"}
    result = run({"books/old-man.json": old_man(tags=["@/tags/war.json"])})
    assert result.entries[0].operation["fields"] == {"tags": ["@/tags/war.json"]}


@pytest.mark.parametrize(
    "path",
    [
        "../books/x.json",
        "/books/x.json",
        "books",
        "books/x.txt",
        "books//x.json",
        "books/\x00.json",
        "books/./x.json",
        "books/.json",
        "",
    ],
)
def test_bad_paths_are_refused(path: str) -> None:
    with pytest.raises(InvalidPath) as caught:
        run({path: {"title": "x"}})
    assert caught.value.code == "invalid_path"


def test_unknown_folder_is_refused() -> None:
    with pytest.raises(UnknownFolder, match="movies"):
        run({"movies/x.json": {"title": "x"}})


@pytest.mark.parametrize("content", [[], "text", 3, True])
def test_content_must_be_an_object(content: Any) -> None:
    with pytest.raises(InvalidContent, match="JSON object"):
        run({"tags/x.json": content})


def test_main_file_without_record_id_is_refused() -> None:
    main = main_files() | {"tags/odd.json": {"label": "odd"}}
    with pytest.raises(InvalidContent, match="no record id"):
        run({"tags/odd.json": {"label": "even"}}, main)


def test_deletes_are_paged_per_folder_in_path_order() -> None:
    main = main_files() | {f"tags/t{i}.json": {"id": f"x{i}", "label": str(i)} for i in range(5)}
    main["authors/a.json"] = {"id": "aa", "name": "A"}
    draft: dict[str, Any] = {f"tags/t{i}.json": None for i in (4, 2, 0, 1, 3)}
    draft["authors/a.json"] = None

    result = run(draft, main, delete_page_size=2)

    pages = [(e.path, e.operation["record_id"], e.operation["page"]) for e in result.entries]
    assert pages == [
        ("authors/a.json", "aa", 0),
        ("tags/t0.json", "x0", 0),
        ("tags/t1.json", "x1", 0),
        ("tags/t2.json", "x2", 1),
        ("tags/t3.json", "x3", 1),
        ("tags/t4.json", "x4", 2),
    ]


def test_stale_reference_index_is_harmless() -> None:
    inputs = InMemoryInputs(main_files(), SCHEMAS)
    inputs.by_record_id[("tags", "t1")].add("books/vanished.json")
    inputs.by_record_id[("tags", "t1")].add("tags/war.json")  # listed, but points at nothing

    result = plan({"tags/sea.json": None}, SCHEMAS, inputs)

    assert shape(result) == [("edit", "books/old-man.json"), ("delete", "tags/sea.json")]


def test_inputs_are_asked_in_a_few_batches() -> None:
    main = main_files() | {"books/other.json": {"id": "b2", "title": "O", "tags": ["t1"]}}
    inputs = InMemoryInputs(main, SCHEMAS)
    plan(
        {
            "books/old-man.json": old_man(title="T"),
            "books/new.json": {"author": "@/authors/hemingway.json", "tags": ["@/tags/war.json"]},
            "tags/sea.json": None,
        },
        SCHEMAS,
        inputs,
    )

    assert sorted(inputs.calls) == [
        "inbound_references",
        "main_contents",
        "main_contents",
        "record_ids",
    ]


def test_deeply_nested_content_is_refused_not_crashed() -> None:
    content: Any = "leaf"
    for _ in range(5000):
        content = [content]
    with pytest.raises(InvalidContent, match="nested"):
        run({"tags/deep.json": {"label": content}})


def test_deleted_file_pointing_at_a_delete_of_another_call_lets_go_first() -> None:
    # the book (one delete call) points at the author (another call): deleting the
    # author first would be refused, and the calls run in any order
    result = run({"books/old-man.json": None, "authors/hemingway.json": None})

    assert entry(result, "edit", "books/old-man.json").operation["fields"] == {"author": None}
    assert entry(result, "edit", "authors/hemingway.json").operation["fields"] == {
        "favourite": None
    }
    assert entry(result, "delete", "authors/hemingway.json").depends_on == (
        "edit:books/old-man.json",
    )


def test_deleted_files_of_one_call_keep_their_pointers_to_each_other() -> None:
    main = main_files() | {
        "tags/sea.json": {"id": "t1", "label": "sea", "related": ["@/tags/war.json"]},
        "tags/war.json": {"id": "t2", "label": "war", "related": ["@/tags/sea.json"]},
    }
    result = run({"tags/sea.json": None, "tags/war.json": None}, main)

    assert {e.path for e in result.entries if e.phase == "delete"} == {
        "tags/sea.json",
        "tags/war.json",
    }
    assert [e for e in result.entries if e.path.startswith("tags/") and e.phase == "edit"] == []
