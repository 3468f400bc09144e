"""API.md §1 over real HTTP: workspaces, connectors and folder schemas, with their errors.

One live publishd for the session (``api``), a fresh sandbox and workspace per
test (``tests/api/conftest.py``). Outcomes are checked where they land: the
sandbox's records, main's files, the pipeline's status and entries.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.api_support import (
    Publishd,
    Sandbox,
    assert_error,
    main_file,
    new_workspace_id,
)

pytestmark = pytest.mark.timeout(120)


def test_create_workspace_then_get_it(api: Publishd) -> None:
    ws = new_workspace_id()
    connector = {"type": "sandbox", "base_url": "http://127.0.0.1:9"}
    created = api.ok("POST", "/workspaces", 201, json={"id": ws, "connector": connector})
    assert created["id"] == ws and created["connector"]["type"] == "sandbox"
    assert created["connector"]["base_url"] == "http://127.0.0.1:9"

    info = api.ok("GET", f"/workspaces/{ws}")
    assert info["id"] == ws
    assert info["main_version"] == 0
    assert info["publishing"] is None
    assert info["folders"] == []


def test_create_workspace_twice_is_a_conflict(api: Publishd) -> None:
    body = {"id": new_workspace_id(), "connector": {"type": "sandbox", "base_url": "http://x"}}
    api.ok("POST", "/workspaces", 201, json=body)
    assert_error(api.post("/workspaces", json=body), 409, "conflict")


@pytest.mark.parametrize(
    "body",
    [
        {"id": "Upper", "connector": {"type": "sandbox", "base_url": "http://x"}},
        {"id": "-dash", "connector": {"type": "sandbox", "base_url": "http://x"}},
        {"id": "a" * 64, "connector": {"type": "sandbox", "base_url": "http://x"}},
        {"id": "ok", "connector": {"type": "webflow", "base_url": "http://x"}},
        {"id": "ok", "connector": {"type": "sandbox", "base_url": "ftp://x"}},
        {"id": "ok"},
        {"id": "ok", "connector": {"type": "sandbox", "base_url": "http://x"}, "extra": 1},
        [],
        "acme",
    ],
    ids=[
        "uppercase",
        "leading-dash",
        "too-long",
        "connector-type",
        "scheme",
        "no-connector",
        "unknown-field",
        "array",
        "string",
    ],
)
def test_create_workspace_refuses_invalid_bodies(api: Publishd, body: Any) -> None:
    before = api.head()
    error = assert_error(api.post("/workspaces", json=body), 422, "invalid_request")
    assert api.head() == before
    if isinstance(body, dict) and "extra" in body:
        assert any(d["loc"] == ["extra"] for d in error["details"])


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"\xff\xfe", b"null", b'{"id": "x", "connector": '], ids=repr
)
def test_malformed_json_is_invalid_request(api: Publishd, raw: bytes) -> None:
    response = api.post("/workspaces", content=raw, headers={"Content-Type": "application/json"})
    assert_error(response, 422, "invalid_request")


def test_unknown_workspace_is_not_found(api: Publishd) -> None:
    assert_error(api.get(f"/workspaces/{new_workspace_id()}"), 404, "not_found")
    assert_error(api.get("/workspaces/NOT_A_VALID_ID"), 404, "not_found")


def test_put_connector_repoints_the_workspace(api: Publishd, sandbox: Sandbox) -> None:
    ws = new_workspace_id()
    dead = {"type": "sandbox", "base_url": "http://127.0.0.1:9"}
    api.ok("POST", "/workspaces", 201, json={"id": ws, "connector": dead})
    sandbox.define({"notes": {}})
    sandbox.create("notes", {"slug": "hello", "text": "hi"})
    api.ok("PUT", f"/workspaces/{ws}/schemas/notes", json={})

    live = {"type": "sandbox", "base_url": sandbox.url}
    changed = api.ok("PUT", f"/workspaces/{ws}/connector", json=live)
    assert changed == {"id": ws, "connector": live}

    pulled = api.ok("POST", f"/workspaces/{ws}/pulls?wait=true")
    assert pulled["created"] == 1
    assert main_file(api, ws, "notes/hello.json")["text"] == "hi"


def test_put_connector_errors(api: Publishd) -> None:
    live = {"type": "sandbox", "base_url": "http://127.0.0.1:9"}
    assert_error(
        api.put(f"/workspaces/{new_workspace_id()}/connector", json=live), 404, "not_found"
    )
    ws = new_workspace_id()
    api.ok("POST", "/workspaces", 201, json={"id": ws, "connector": live})
    assert_error(
        api.put(f"/workspaces/{ws}/connector", json={"type": "sandbox"}), 422, "invalid_request"
    )


def test_put_schema_for_nested_folder_lists_it(api: Publishd) -> None:
    ws = new_workspace_id()
    api.ok(
        "POST",
        "/workspaces",
        201,
        json={"id": ws, "connector": {"type": "sandbox", "base_url": "http://x"}},
    )
    schema = {
        "idPath": "id",
        "fields": [
            {"name": "author", "reference": True, "referenceTarget": "authors", "multiple": False}
        ],
        "readOnly": ["createdOn", "lastUpdated"],
        "filenameFrom": "slug",
    }
    saved = api.ok("PUT", f"/workspaces/{ws}/schemas/site1/books", json=schema)
    assert saved["folder"] == "site1/books"
    assert saved["fields"][0]["referenceTarget"] == "authors"
    api.ok("PUT", f"/workspaces/{ws}/schemas/authors", json={})
    assert api.ok("GET", f"/workspaces/{ws}")["folders"] == ["authors", "site1/books"]


@pytest.mark.parametrize(
    ("folder", "body", "code"),
    [
        ("books", {"fields": [{"name": "a", "reference": True}]}, "invalid_request"),
        ("books", {"fields": [{"name": "a"}, {"name": "a"}]}, "invalid_request"),
        ("books", {"colour": "red"}, "invalid_request"),
        ("books", {"fields": "author"}, "invalid_request"),
        ("books%5Cx", {}, "invalid_path"),
        (
            "books",
            {"fields": [{"name": "a", "reference": True, "referenceTarget": "/abs"}]},
            "invalid_path",
        ),
    ],
    ids=["no-target", "twice", "unknown-field", "not-a-list", "backslash", "absolute-target"],
)
def test_put_schema_refuses_invalid_schemas(
    api: Publishd, folder: str, body: dict[str, Any], code: str
) -> None:
    ws = new_workspace_id()
    api.ok(
        "POST",
        "/workspaces",
        201,
        json={"id": ws, "connector": {"type": "sandbox", "base_url": "http://x"}},
    )
    before = api.head()
    assert_error(api.put(f"/workspaces/{ws}/schemas/{folder}", json=body), 422, code)
    assert api.head() == before
    assert_error(
        api.put(f"/workspaces/{new_workspace_id()}/schemas/books", json={}), 404, "not_found"
    )


def test_a_schema_folder_with_a_trailing_newline_does_not_overwrite_another(
    api: Publishd,
) -> None:
    """``PUT /schemas/books%0A`` overwrote ``books``: the route stopped before the newline."""
    ws = new_workspace_id()
    api.ok(
        "POST",
        "/workspaces",
        201,
        json={"id": ws, "connector": {"type": "sandbox", "base_url": "http://x"}},
    )
    api.ok("PUT", f"/workspaces/{ws}/schemas/books", json={"idPath": "id"})
    before = api.head()

    for folder in ("books%0A", "books%E2%80%8B", "books%C2%9B", "bo%FFoks"):
        response = api.put(f"/workspaces/{ws}/schemas/{folder}", json={"idPath": "other"})
        assert_error(response, 422, "invalid_path")

    assert api.head() == before
    assert api.ok("GET", f"/workspaces/{ws}")["folders"] == ["books"]


@pytest.mark.parametrize(
    "body",
    [
        {"fields": [{"name": "a", "reference": True, "referenceTarget": "x", "multiple": "yes"}]},
        {"fields": [{"name": "a", "reference": "true", "referenceTarget": "x"}]},
        {"fields": [{"name": "a", "reference": True, "referenceTarget": "x", "multiple": 1}]},
        {"fields": [{"name": "author\n"}]},
        {"idPath": "id\n"},
        {"readOnly": ["x" * 129]},
        {"readOnly": [f"f{i}" for i in range(501)]},
        {"readOnly": ["created on"]},
        {"filenameFrom": "s" * 129},
        {"filenameFrom": "slug\n"},
    ],
    ids=[
        "multiple-yes",
        "reference-string",
        "multiple-int",
        "name-newline",
        "idpath-newline",
        "readonly-long-name",
        "readonly-too-many",
        "readonly-space",
        "filenamefrom-long",
        "filenamefrom-newline",
    ],
)
def test_schema_values_are_not_coerced_nor_unbounded(api: Publishd, body: dict[str, Any]) -> None:
    ws = new_workspace_id()
    api.ok(
        "POST",
        "/workspaces",
        201,
        json={"id": ws, "connector": {"type": "sandbox", "base_url": "http://x"}},
    )
    before = api.head()

    assert_error(api.put(f"/workspaces/{ws}/schemas/books", json=body), 422, "invalid_request")

    assert api.head() == before
