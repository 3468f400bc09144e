"""Clearing pointers to deleted or uncreated files out of file content."""

from __future__ import annotations

from typing import Any

from domain.clearing import PointerTargets, RefTarget, clear_pointers
from domain.paths import FilePath
from domain.schema import FolderSchema, ReferenceField

BOOKS = FolderSchema(
    "books", fields=(ReferenceField("author", "authors"), ReferenceField("tags", "tags", True))
)
BOOK: dict[str, Any] = {
    "id": "b1",
    "author": "@/authors/x.json",
    "tags": ["t1", "@/tags/new.json"],
    "notes": {"see": ["@/books/other.json", {"deep": "@/authors/y.json"}]},
    "title": "@/not-a-ref",
}


def deleted(*targets: RefTarget) -> PointerTargets:
    return PointerTargets(targets)


def test_clearing_an_at_ref_sets_singles_to_null_and_drops_list_items() -> None:
    result = clear_pointers(
        BOOK,
        BOOKS,
        deleted(RefTarget("authors", "x.json", "a1"), RefTarget("books", "other.json", None)),
    )

    assert result.content["author"] is None
    assert result.content["notes"] == {"see": [{"deep": "@/authors/y.json"}]}
    assert result.fields == ("author", "notes")
    assert result.targets == {FilePath("authors", "x.json"), FilePath("books", "other.json")}
    assert BOOK["author"] == "@/authors/x.json"


def test_clearing_resolved_ids_only_in_reference_fields_of_the_target_folder() -> None:
    content = {"author": "a1", "tags": ["t1", "t2", "t1"], "title": "t1", "other": ["t1"]}

    result = clear_pointers(content, BOOKS, deleted(RefTarget("tags", "sea.json", "t1")))

    assert result.content == {"author": "a1", "tags": ["t2"], "title": "t1", "other": ["t1"]}
    assert result.fields == ("tags",)
    # same id, other folder: not a pointer to the deleted tag
    result = clear_pointers(content, BOOKS, deleted(RefTarget("authors", "z.json", "t1")))
    assert result.fields == ()


def test_clearing_nested_at_ref_in_an_object_sets_it_to_null() -> None:
    content = {"notes": {"a": {"b": "@/tags/x.json"}, "c": 1}}

    result = clear_pointers(content, None, deleted(RefTarget("tags", "x.json", None)))

    assert result.content == {"notes": {"a": {"b": None}, "c": 1}}


def test_clearing_nothing_keeps_the_same_content() -> None:
    result = clear_pointers(BOOK, BOOKS, deleted(RefTarget("tags", "nope.json", "t9")))

    assert result.content is BOOK
    assert result.fields == ()
    assert clear_pointers(BOOK, BOOKS, deleted()).content is BOOK
