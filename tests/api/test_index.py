"""API.md §7 over real HTTP: FileIndex lookups and references, with their errors.

One live publishd for the session (``api``), a fresh sandbox and workspace per
test (``tests/api/conftest.py``). Outcomes are checked where they land: the
sandbox's records, main's files, the pipeline's status and entries.
"""

from __future__ import annotations

import pytest

from tests.api.api_support import (
    Publishd,
    Sandbox,
    assert_error,
    new_workspace_id,
)

pytestmark = pytest.mark.timeout(120)


def test_file_index_both_lookups(api: Publishd, ws: str, sandbox: Sandbox) -> None:
    woolf = sandbox.ids["woolf"]
    base = f"/workspaces/{ws}/file-index"
    by_id = api.ok("GET", f"{base}?folder=authors&record_id={woolf}")
    assert (by_id["folder"], by_id["record_id"], by_id["filename"]) == (
        "authors",
        woolf,
        "woolf.json",
    )
    assert "last_seen_at" in by_id
    assert api.ok("GET", f"{base}?folder=authors&filename=woolf.json") == by_id

    assert_error(api.get(f"{base}?folder=authors&record_id=nope"), 404, "not_found")
    assert_error(api.get(f"{base}?folder=authors&filename=nope.json"), 404, "not_found")
    for query in (
        "folder=authors",
        "record_id=x",
        f"folder=authors&record_id={woolf}&filename=x",
        "",
    ):
        assert_error(api.get(f"{base}?{query}"), 422, "invalid_request")


def test_references_by_target_and_by_record(api: Publishd, ws: str, sandbox: Sandbox) -> None:
    base = f"/workspaces/{ws}/references"
    refs = api.ok("GET", f"{base}?target=@/authors/woolf.json")["references"]
    assert sorted(r["source_path"] for r in refs) == [
        "books/dalloway.json",
        "books/lighthouse.json",
    ]
    for r in refs:
        assert (r["branch"], r["target_folder"], r["target_filename"]) == (
            "main",
            "authors",
            "woolf.json",
        )
        assert "target_record_id" in r
    by_record = api.ok("GET", f"{base}?folder=books&record_id={sandbox.ids['lighthouse']}")[
        "references"
    ]
    assert [(r["source_path"], r["target_folder"]) for r in by_record] == [
        ("menus/main.json", "books")
    ]
    assert api.ok("GET", f"{base}?target=@/authors/nobody.json")["references"] == []

    for query in ("", "folder=books", "record_id=x", "target=@/a/b.json&folder=a&record_id=x"):
        assert_error(api.get(f"{base}?{query}"), 422, "invalid_request")
    assert_error(api.get(f"{base}?target=authors/woolf.json"), 422, "invalid_path")
    assert_error(
        api.get(f"/workspaces/{new_workspace_id()}/references?target=@/a/b.json"), 404, "not_found"
    )
