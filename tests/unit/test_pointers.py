"""Reading and resolving pointers inside file content, and the test-side helpers built on them."""

from __future__ import annotations

from typing import Any

from domain.paths import FilePath
from domain.pointers import iter_at_refs, ref_strings, resolve_refs
from domain.schema import FolderSchema, ReferenceField
from fixtures.pointers import ExtractedRef, extract_references, strip_fields

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
