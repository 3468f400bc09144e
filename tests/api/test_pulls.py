"""API.md §2 over real HTTP: pulls of main, waited for and in the background, and errors.

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
    library,
    main_file,
    new_workspace_id,
)

pytestmark = pytest.mark.timeout(120)


def test_pull_counts_created_unchanged_updated_deleted(api: Publishd, sandbox: Sandbox) -> None:
    ws = library(api, sandbox)  # the first pull created 6
    again = api.ok("POST", f"/workspaces/{ws}/pulls?wait=true")
    assert again["state"] == "completed"
    assert (again["created"], again["updated"], again["unchanged"], again["deleted"]) == (
        0,
        0,
        6,
        0,
    )
    assert isinstance(again["pull_id"], str)

    sandbox.call(
        "PATCH",
        f"/collections/books/items/{sandbox.ids['oldman']}",
        json={"fieldData": {"title": "Old Man!"}},
    )
    sandbox.call(
        "DELETE", "/collections/menus/items", json={"items": [sandbox.items("menus")[0]["id"]]}
    )
    sandbox.create("authors", {"name": "Tolstoy", "slug": "tolstoy"})
    moved = api.ok(
        "POST", f"/workspaces/{ws}/pulls?wait=true", json={"folders": ["authors", "books", "menus"]}
    )
    assert (moved["created"], moved["updated"], moved["unchanged"], moved["deleted"]) == (
        1,
        1,
        4,
        1,
    )
    assert main_file(api, ws, "books/old-man.json")["title"] == "Old Man!"
    assert_error(api.get(f"/workspaces/{ws}/files/menus/main.json"), 404, "not_found")


def test_pull_without_wait_is_accepted_and_runs(api: Publishd, sandbox: Sandbox) -> None:
    ws = library(api, sandbox)
    sandbox.create("authors", {"name": "Tolstoy", "slug": "tolstoy"})
    accepted = api.ok("POST", f"/workspaces/{ws}/pulls", 202, json={"folders": ["authors"]})
    assert set(accepted) >= {"pull_id"}

    def pulled() -> bool:
        return api.get(f"/workspaces/{ws}/files/authors/tolstoy.json").status_code == 200

    api.wait_for("the background pull", pulled)
    assert main_file(api, ws, "authors/tolstoy.json")["name"] == "Tolstoy"


def test_pull_errors(api: Publishd, sandbox: Sandbox) -> None:
    ws = library(api, sandbox)
    assert_error(
        api.post(f"/workspaces/{ws}/pulls", json={"folders": ["nope"]}), 422, "invalid_path"
    )
    assert_error(
        api.post(f"/workspaces/{ws}/pulls", json={"folders": "books"}), 422, "invalid_request"
    )
    assert_error(api.post(f"/workspaces/{ws}/pulls", json={"other": 1}), 422, "invalid_request")
    assert_error(api.post(f"/workspaces/{ws}/pulls?wait=maybe"), 422, "invalid_request")
    assert_error(api.post(f"/workspaces/{new_workspace_id()}/pulls"), 404, "not_found")
