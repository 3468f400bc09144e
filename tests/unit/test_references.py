"""Reading, resolving, stripping and clearing pointers inside file content."""

from __future__ import annotations

from typing import Any

from domain.paths import FilePath
from domain.references import (
    ExtractedRef,
    PointerTargets,
    RefTarget,
    clear_pointers,
    extract_references,
    iter_at_refs,
    ref_strings,
    resolve_refs,
    strip_fields,
)
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


def test_at_refs_are_found_anywhere_with_their_dotted_path() -> None:
    assert list(iter_at_refs(BOOK)) == [
        ("author", FilePath("authors", "x.json")),
        ("tags.1", FilePath("tags", "new.json")),
        ("notes.see.0", FilePath("books", "other.json")),
        ("notes.see.1.deep", FilePath("authors", "y.json")),
    ]


def test_ref_strings_include_malformed_refs() -> None:
    assert ("title", "@/not-a-ref") in ref_strings(BOOK)
    assert ref_strings("@/tags/a.json", "label") == [("label", "@/tags/a.json")]


def test_extract_references_lists_both_kinds() -> None:
    refs = extract_references(BOOK, BOOKS)

    assert ExtractedRef("author", "authors", "x.json", None) in refs
    assert ExtractedRef("tags.0", "tags", None, "t1") in refs
    assert ExtractedRef("tags.1", "tags", "new.json", None) in refs
    assert len(refs) == 5


def test_strip_fields_returns_both_halves() -> None:
    kept, removed = strip_fields(BOOK, ["author", "tags", "missing"])

    assert removed == {"author": "@/authors/x.json", "tags": ["t1", "@/tags/new.json"]}
    assert set(kept) == {"id", "notes", "title"}
    assert "author" in BOOK  # the input is left alone


def test_resolve_refs_replaces_known_targets_and_leaves_the_rest() -> None:
    ids = {FilePath("authors", "x.json"): "a1", FilePath("books", "other.json"): "b2"}

    resolved = resolve_refs(BOOK, ids.get)

    assert resolved["author"] == "a1"
    assert resolved["tags"] == ["t1", "@/tags/new.json"]
    assert resolved["notes"] == {"see": ["b2", {"deep": "@/authors/y.json"}]}
    assert resolved["title"] == "@/not-a-ref"
    assert BOOK["author"] == "@/authors/x.json"


def test_resolve_refs_returns_the_same_object_when_nothing_resolves() -> None:
    assert resolve_refs(BOOK, lambda _: None) is BOOK


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
