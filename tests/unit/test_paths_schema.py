"""Path and schema validation: what the API refuses before anything is planned."""

from __future__ import annotations

from typing import Any

import pytest

from domain.errors import InvalidPath, InvalidSchema
from domain.paths import FilePath, parse_folder, parse_path, parse_ref, try_parse_ref
from domain.schema import DEFAULT_READ_ONLY, FolderSchema, ReferenceField


@pytest.mark.parametrize(
    ("value", "folder", "filename"),
    [
        ("books/a.json", "books", "a.json"),
        ("site1/menus/main.json", "site1/menus", "main.json"),
        ("books/é.json", "books", "é.json"),
        ("b/..x.json", "b", "..x.json"),
    ],
)
def test_good_paths_split_into_folder_and_filename(value: str, folder: str, filename: str) -> None:
    parsed = parse_path(value)

    assert parsed == FilePath(folder, filename)
    assert parsed.path == value
    assert parsed.ref == f"@/{value}"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty"),
        ("a.json", "folder/name.json"),
        ("/books/a.json", "relative"),
        ("../books/a.json", "'..'"),
        ("books/../a.json", "'..'"),
        ("books/./a.json", "'.'"),
        ("books//a.json", "empty"),
        ("books/a.json/", "empty"),
        ("books/a.txt", ".json"),
        ("books/.json", ".json"),
        ("books/a\x00.json", "control"),
        ("books/a\n.json", "control"),
        ("books/a\x7f.json", "control"),
        ("books\\a.json", "backslash"),
        ("b/" + "x" * 1100 + ".json", "longer"),
    ],
)
def test_bad_paths_are_refused_with_a_reason(value: str, reason: str) -> None:
    with pytest.raises(InvalidPath, match=reason) as caught:
        parse_path(value)
    assert caught.value.code == "invalid_path"


def test_a_path_must_be_a_string() -> None:
    bad: Any = 42
    with pytest.raises(InvalidPath, match="string"):
        parse_path(bad)


def test_refs_parse_to_their_target_and_malformed_refs_are_none() -> None:
    assert parse_ref("@/authors/x.json") == FilePath("authors", "x.json")
    assert try_parse_ref("@/authors/x.json") == FilePath("authors", "x.json")
    assert try_parse_ref("@/x.json") is None
    assert try_parse_ref("authors/x.json") is None
    assert try_parse_ref(3) is None
    with pytest.raises(InvalidPath):
        parse_ref("authors/x.json")


def test_folders_follow_the_same_segment_rules() -> None:
    assert parse_folder("site1/menus") == "site1/menus"
    for bad in ("", "/a", "a/", "a/../b", "a\tb"):
        with pytest.raises(InvalidPath):
            parse_folder(bad)


def test_schema_round_trips_through_its_json_form() -> None:
    data = {
        "idPath": "_id",
        "fields": [
            {"name": "author", "reference": True, "referenceTarget": "authors", "multiple": False},
            {"name": "tags", "reference": True, "referenceTarget": "tags", "multiple": True},
        ],
        "readOnly": ["createdOn", "lastUpdated"],
        "filenameFrom": "slug",
    }

    schema = FolderSchema.from_dict("books", data)

    assert schema.fields == (
        ReferenceField("author", "authors"),
        ReferenceField("tags", "tags", True),
    )
    assert schema.unsent_fields == {"_id", "createdOn", "lastUpdated"}
    assert schema.to_dict() == data
    assert FolderSchema.from_dict("books", schema.to_dict()) == schema


def test_schema_defaults() -> None:
    schema = FolderSchema.from_dict("books", {})

    assert schema.id_path == "id"
    assert schema.read_only == frozenset(DEFAULT_READ_ONLY)
    assert schema.record_id_of({"id": "r1"}) == "r1"
    assert schema.record_id_of({"id": ""}) is None
    assert schema.record_id_of({"id": 7}) is None


def test_non_reference_fields_are_accepted_but_not_kept() -> None:
    schema = FolderSchema.from_dict("books", {"fields": [{"name": "title"}]})

    assert schema.fields == ()
    assert schema.reference_field("title") is None


def test_id_path_is_never_read_only() -> None:
    schema = FolderSchema.from_dict("books", {"readOnly": ["id", "cdnUrl"]})

    assert schema.read_only == {"cdnUrl"}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"idPath": ""}, "idPath"),
        ({"idPath": 3}, "idPath"),
        ({"fields": {}}, "list"),
        ({"fields": ["author"]}, "object"),
        ({"fields": [{"name": "1bad"}]}, "not valid"),
        ({"fields": [{"name": "a"}, {"name": "a"}]}, "twice"),
        ({"fields": [{"name": "a", "reference": True}]}, "referenceTarget"),
        ({"fields": [{"name": "a", "reference": True, "referenceTarget": "../x"}]}, "'..'"),
        (
            {"fields": [{"name": "a", "reference": True, "referenceTarget": "x", "multiple": 1}]},
            "true or false",
        ),
        ({"readOnly": "createdOn"}, "readOnly"),
        ({"readOnly": [1]}, "readOnly"),
        ({"filenameFrom": 5}, "filenameFrom"),
    ],
)
def test_bad_schemas_are_refused_with_a_reason(data: dict[str, Any], reason: str) -> None:
    with pytest.raises((InvalidSchema, InvalidPath), match=reason):
        FolderSchema.from_dict("books", data)


def test_schema_folder_is_validated() -> None:
    with pytest.raises(InvalidPath):
        FolderSchema.from_dict("../books", {})
