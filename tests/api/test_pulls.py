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
    edit_title,
    library,
    main_file,
    new_workspace_id,
    plan,
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
    assert accepted["state"] == "running" and isinstance(accepted["pull_id"], str)

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
    assert_error(
        api.post(f"/workspaces/{ws}/pulls", json={"folders": ["books"], "paths": ["books/a.json"]}),
        422,
        "invalid_request",
    )
    assert_error(api.post(f"/workspaces/{ws}/pulls", json={"paths": []}), 422, "invalid_request")
    missing = assert_error(
        api.post(f"/workspaces/{ws}/pulls", json={"paths": ["books/nowhere.json"]}),
        422,
        "invalid_path",
    )
    assert missing["details"] == {"paths": ["books/nowhere.json"]}
    assert_error(
        api.post(f"/workspaces/{ws}/pulls", json={"paths": ["nope/a.json"]}), 422, "invalid_path"
    )
    assert_error(
        api.post(f"/workspaces/{ws}/pulls", json={"records": [{"folder": "books"}]}),
        422,
        "invalid_request",
    )
    assert_error(
        api.post(
            f"/workspaces/{ws}/pulls", json={"records": [{"folder": "nope", "record_id": "x"}]}
        ),
        422,
        "invalid_path",
    )
    assert api.runtime.app.workspace(ws).pulling is None  # nothing refused was started


def test_one_pull_at_a_time_and_no_run_or_publish_during_it(
    api: Publishd, sandbox: Sandbox
) -> None:
    ws = library(api, sandbox)
    edit_title(api, ws, "books/old-man.json", "Old Man, edited")
    pipeline_id = plan(api, ws)["pipeline_id"]
    sandbox.call("PUT", "/_admin/faults", json={"latency_ms": 1000})  # each listing takes 1 s
    try:
        first = api.ok("POST", f"/workspaces/{ws}/pulls", 202)
        second = assert_error(api.post(f"/workspaces/{ws}/pulls"), 409, "pull_in_progress")
        assert second["details"] == {"pull_id": first["pull_id"]}
        run = assert_error(api.post(f"/pipelines/{pipeline_id}/run"), 409, "pull_in_progress")
        assert run["details"] == {"pull_id": first["pull_id"]}
        assert_error(api.post(f"/workspaces/{ws}/drafts/alice/publish"), 409, "pull_in_progress")
    finally:
        sandbox.call("PUT", "/_admin/faults", json={})
    api.wait_for(
        "the pull to end", lambda: api.runtime.app.pull(first["pull_id"]).state == "completed"
    )
    api.ok("POST", f"/pipelines/{pipeline_id}/run", 202)  # the lock went with the pull
    api.wait_state(pipeline_id, "completed")


def test_no_pull_while_a_pipeline_runs(api: Publishd, ws: str, gate_closed: Sandbox) -> None:
    edit_title(api, ws, "books/old-man.json", "Old Man, edited")
    running = api.ok("POST", f"/workspaces/{ws}/drafts/alice/publish", 202)
    api.wait_for("a write held at the gate", lambda: gate_closed.gate.held)
    refused = assert_error(api.post(f"/workspaces/{ws}/pulls"), 409, "publish_in_progress")
    assert refused["details"] == {"pipeline_id": running["pipeline_id"]}
    gate_closed.gate.open()
    api.wait_state(running["pipeline_id"], "completed")
    assert api.ok("POST", f"/workspaces/{ws}/pulls?wait=true")["state"] == "completed"


def test_targeted_pulls_by_records_and_by_paths(api: Publishd, sandbox: Sandbox) -> None:
    ws = library(api, sandbox)
    ids = sandbox.ids
    menu = sandbox.item_by("menus", "slug", "main")["id"]
    sandbox.call(
        "PATCH", f"/collections/menus/items/{menu}", json={"fieldData": {"items": [ids["oldman"]]}}
    )
    sandbox.call("DELETE", "/collections/books/items", json={"items": [ids["dalloway"]]})
    sandbox.call(
        "PATCH",
        f"/collections/books/items/{ids['oldman']}",
        json={"fieldData": {"title": "Old Man, upstream"}},
    )
    new = sandbox.create("books", {"title": "New", "slug": "new"})
    records = [
        {"folder": "books", "record_id": ids["oldman"]},
        {"folder": "books", "record_id": ids["dalloway"]},
        {"folder": "books", "record_id": new},
    ]

    done = api.ok("POST", f"/workspaces/{ws}/pulls?wait=true", json={"records": records})

    assert done["state"] == "completed"
    assert (done["created"], done["updated"], done["unchanged"], done["deleted"]) == (1, 1, 0, 1)
    assert main_file(api, ws, "books/old-man.json")["title"] == "Old Man, upstream"
    assert main_file(api, ws, "books/new.json")["id"] == new
    assert_error(api.get(f"/workspaces/{ws}/files/books/dalloway.json"), 404, "not_found")
    assert main_file(api, ws, "menus/main.json")["items"] != [ids["oldman"]]  # not named

    sandbox.call(
        "PATCH",
        f"/collections/authors/items/{ids['woolf']}",
        json={"fieldData": {"name": "Virginia Woolf"}},
    )
    by_paths = api.ok(
        "POST",
        f"/workspaces/{ws}/pulls?wait=true",
        json={"paths": ["authors/woolf.json", "menus/main.json"]},
    )
    assert (by_paths["updated"], by_paths["unchanged"]) == (2, 0)
    assert main_file(api, ws, "authors/woolf.json")["name"] == "Virginia Woolf"
    assert main_file(api, ws, "menus/main.json")["items"] == [ids["oldman"]]
