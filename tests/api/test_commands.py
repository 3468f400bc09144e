"""Every command and query of API.md §1-5, §7 and §9 over real HTTP, with its errors.

One live publishd for the module (``api``), a fresh sandbox and workspace per
test. Outcomes are checked where they land: the sandbox's records, main's
files, the pipeline's status and entries.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.api_support import (
    MAX_REQUEST_BYTES,
    Publishd,
    Sandbox,
    assert_error,
    library,
    new_workspace_id,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def ws(api: Publishd, sandbox: Sandbox) -> str:
    return library(api, sandbox)


@pytest.fixture
def gate_closed(sandbox: Sandbox) -> Iterator[Sandbox]:
    sandbox.gate.close()
    try:
        yield sandbox
    finally:
        sandbox.gate.open()


def draft_url(ws: str, user: str = "alice") -> str:
    return f"/workspaces/{ws}/drafts/{user}"


def write(api: Publishd, ws: str, path: str, content: dict[str, Any], user: str = "alice") -> None:
    api.ok("PUT", f"{draft_url(ws, user)}/files/{path}", json=content)


def main_file(api: Publishd, ws: str, path: str) -> dict[str, Any]:
    found: dict[str, Any] = api.ok("GET", f"/workspaces/{ws}/files/{path}")
    return found


def plan(api: Publishd, ws: str, user: str = "alice") -> dict[str, Any]:
    found: dict[str, Any] = api.ok("POST", f"{draft_url(ws, user)}/plans", 201)
    return found


def edit_title(api: Publishd, ws: str, path: str, title: str, user: str = "alice") -> None:
    write(api, ws, path, {**main_file(api, ws, path), "title": title}, user)


# --- §1 workspaces and schemas
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
    ids=["uppercase", "leading-dash", "too-long", "connector-type", "scheme", "no-connector",
         "unknown-field", "array", "string"],
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
    assert_error(api.put(f"/workspaces/{new_workspace_id()}/connector", json=live), 404,
                 "not_found")
    ws = new_workspace_id()
    api.ok("POST", "/workspaces", 201, json={"id": ws, "connector": live})
    assert_error(api.put(f"/workspaces/{ws}/connector", json={"type": "sandbox"}), 422,
                 "invalid_request")


def test_put_schema_for_nested_folder_lists_it(api: Publishd) -> None:
    ws = new_workspace_id()
    api.ok("POST", "/workspaces", 201,
           json={"id": ws, "connector": {"type": "sandbox", "base_url": "http://x"}})
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
        ("books", {"fields": [{"name": "a", "reference": True, "referenceTarget": "/abs"}]},
         "invalid_path"),
    ],
    ids=["no-target", "twice", "unknown-field", "not-a-list", "backslash", "absolute-target"],
)
def test_put_schema_refuses_invalid_schemas(
    api: Publishd, folder: str, body: dict[str, Any], code: str
) -> None:
    ws = new_workspace_id()
    api.ok("POST", "/workspaces", 201,
           json={"id": ws, "connector": {"type": "sandbox", "base_url": "http://x"}})
    before = api.head()
    assert_error(api.put(f"/workspaces/{ws}/schemas/{folder}", json=body), 422, code)
    assert api.head() == before
    assert_error(api.put(f"/workspaces/{new_workspace_id()}/schemas/books", json={}), 404,
                 "not_found")


# --- §2 pulls
def test_pull_counts_created_unchanged_updated_deleted(api: Publishd, sandbox: Sandbox) -> None:
    ws = library(api, sandbox)  # the first pull created 6
    again = api.ok("POST", f"/workspaces/{ws}/pulls?wait=true")
    assert again["state"] == "completed"
    assert (again["created"], again["updated"], again["unchanged"], again["deleted"]) == (
        0, 0, 6, 0,
    )
    assert isinstance(again["pull_id"], str)

    sandbox.call("PATCH", f"/collections/books/items/{sandbox.ids['oldman']}",
                 json={"fieldData": {"title": "Old Man!"}})
    sandbox.call("DELETE", "/collections/menus/items", json={"items": [
        sandbox.items("menus")[0]["id"]]})
    sandbox.create("authors", {"name": "Tolstoy", "slug": "tolstoy"})
    moved = api.ok("POST", f"/workspaces/{ws}/pulls?wait=true",
                   json={"folders": ["authors", "books", "menus"]})
    assert (moved["created"], moved["updated"], moved["unchanged"], moved["deleted"]) == (
        1, 1, 4, 1,
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
    assert_error(api.post(f"/workspaces/{ws}/pulls", json={"folders": ["nope"]}), 422,
                 "invalid_path")
    assert_error(api.post(f"/workspaces/{ws}/pulls", json={"folders": "books"}), 422,
                 "invalid_request")
    assert_error(api.post(f"/workspaces/{ws}/pulls", json={"other": 1}), 422, "invalid_request")
    assert_error(api.post(f"/workspaces/{ws}/pulls?wait=maybe"), 422, "invalid_request")
    assert_error(api.post(f"/workspaces/{new_workspace_id()}/pulls"), 404, "not_found")


# --- §3 files and drafts
def test_files_on_main_and_through_a_draft(api: Publishd, ws: str, sandbox: Sandbox) -> None:
    book = main_file(api, ws, "books/old-man.json")
    assert book["id"] == sandbox.ids["oldman"] and book["title"] == "Old Man"
    assert book["author"] == sandbox.ids["hemingway"]
    assert {"createdOn", "lastUpdated"} <= set(book)

    edited = {**book, "title": "Old Man (revised)"}
    written = api.ok("PUT", f"{draft_url(ws)}/files/books/old-man.json", json=edited)
    assert written["path"] == "books/old-man.json"
    write(api, ws, "books/new.json", {"title": "New", "slug": "new"})
    assert api.delete(f"{draft_url(ws)}/files/books/dalloway.json").status_code == 204

    base = f"/workspaces/{ws}/files"
    assert main_file(api, ws, "books/old-man.json")["title"] == "Old Man"
    assert api.ok("GET", f"{base}/books/old-man.json?draft=alice")["title"] == "Old Man (revised)"
    assert api.ok("GET", f"{base}/books/new.json?draft=alice")["title"] == "New"
    assert api.ok("GET", f"{base}/books/lighthouse.json?draft=alice")["title"] == "Lighthouse"
    assert_error(api.get(f"{base}/books/new.json"), 404, "not_found")
    assert_error(api.get(f"{base}/books/dalloway.json?draft=alice"), 404, "not_found")
    assert api.ok("GET", f"{base}/books/dalloway.json?draft=bob")["title"] == "Dalloway"

    changes = api.ok("GET", f"{draft_url(ws)}/changes")
    assert changes["version"] >= 3
    assert changes["changes"] == [
        {"path": "books/dalloway.json", "change": "deleted"},
        {"path": "books/new.json", "change": "added"},
        {"path": "books/old-man.json", "change": "modified"},
    ]

    # deleting a file the draft added drops it
    assert api.delete(f"{draft_url(ws)}/files/books/new.json").status_code == 204
    paths = [c["path"] for c in api.ok("GET", f"{draft_url(ws)}/changes")["changes"]]
    assert paths == ["books/dalloway.json", "books/old-man.json"]

    assert api.delete(draft_url(ws)).status_code == 204
    assert api.ok("GET", f"{draft_url(ws)}/changes")["changes"] == []
    assert api.ok("GET", f"{base}/books/dalloway.json?draft=alice")["title"] == "Dalloway"


def test_changes_of_a_user_without_a_draft(api: Publishd, ws: str) -> None:
    assert api.ok("GET", f"{draft_url(ws, 'nobody')}/changes") == {"version": 0, "changes": []}


def test_file_and_draft_errors(api: Publishd, ws: str) -> None:
    base = f"/workspaces/{ws}"
    before = api.head()
    assert_error(api.get(f"{base}/files/books/absent.json"), 404, "not_found")
    assert_error(api.get(f"{new_url(base)}/files/books/old-man.json"), 404, "not_found")
    for bad in ("nope/x.json", "books/x.txt", "books/.json", "books//x.json", "books%5Cx.json"):
        assert_error(api.put(f"{draft_url(ws)}/files/{bad}", json={"a": 1}), 422, "invalid_path")
        assert_error(api.get(f"{base}/files/{bad}"), 422, "invalid_path")
    assert_error(api.get(f"{base}/files/books/old-man.json?draft=%20bad"), 422,
                 "invalid_request")
    for body in ([1, 2], "text", 3, None):
        assert_error(api.put(f"{draft_url(ws)}/files/books/x.json", json=body), 422,
                     "invalid_request")
    assert_error(api.put(f"{draft_url(ws)}/files/books/x.json", content=b"{oops",
                         headers={"Content-Type": "application/json"}), 422, "invalid_request")
    assert_error(api.put(f"{draft_url(ws, '.bad')}/files/books/x.json", json={}), 422,
                 "invalid_request")
    assert_error(api.delete(f"{draft_url(ws)}/files/nope/x.json"), 422, "invalid_path")
    assert api.head() == before, "a refused request wrote something"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"title": "a\\u0000b"}',
        b'{"ti\\u0000tle": "ab"}',
        b'{"list": [1, {"deep": ["\\u0000"]}]}',
        b'{"a":' * 65 + b"1" + b"}" * 65,
        b"[" * 5000 + b"]" * 5000,
        b'{"pages": NaN}',
        b'{"pages": [Infinity, -Infinity]}',
        b'{"title": "\\ud800"}',
    ],
    ids=[
        "nul-value", "nul-key", "nul-nested", "65-levels", "5000-levels",
        "nan", "infinity", "lone-surrogate",
    ],
)
def test_bodies_that_would_break_their_readers_are_refused(
    api: Publishd, ws: str, raw: bytes
) -> None:
    """A NUL, NaN or Infinity (not JSON, though Python's json module reads them) stops
    every jsonb projection; a lone surrogate cannot be encoded as UTF-8 to be stored;
    deep nesting overflows the recursion limit."""
    before = api.head()
    url = f"{draft_url(ws)}/files/books/bad.json"
    assert_error(api.put(url, content=raw), 422, "invalid_request")
    assert api.head() == before
    assert api.ok("GET", f"{draft_url(ws)}/changes")["changes"] == []
    write(api, ws, "books/ok.json", {"a": {"b": {"c": [1, 2, {"d": "fine"}]}}})
    assert api.ok("GET", f"{draft_url(ws)}/changes")["changes"] == [
        {"path": "books/ok.json", "change": "added"}
    ]


def test_a_nul_in_a_query_is_invalid_request(api: Publishd, ws: str) -> None:
    for url in (
        f"/workspaces/{ws}/file-index?folder=books&filename=a%00b",
        f"/workspaces/{ws}/references?folder=books&record_id=a%00b",
        f"/pipelines?workspace={ws}&user=a%00b",
        "/pipelines?before=a%00b",
    ):
        assert_error(api.get(url), 422, "invalid_request")


def new_url(base: str) -> str:
    return base.rsplit("/", 1)[0] + "/" + new_workspace_id()


def test_a_body_over_the_limit_is_payload_too_large(api: Publishd, ws: str) -> None:
    before = api.head()
    big = {"title": "x" * MAX_REQUEST_BYTES}
    url = f"{draft_url(ws)}/files/books/big.json"
    assert_error(api.put(url, json=big), 413, "payload_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        yield b'{"title": "'
        for _ in range(MAX_REQUEST_BYTES // 4096 + 1):
            yield b"x" * 4096
        yield b'"}'

    assert_error(api.put(url, content=chunks()), 413, "payload_too_large")
    assert api.head() == before
    write(api, ws, "books/big.json", {"title": "x" * (MAX_REQUEST_BYTES // 2)})


# --- §4 plan and run
def test_plan_all_four_phases_in_order(api: Publishd, ws: str) -> None:
    edit_title(api, ws, "books/old-man.json", "Old Man (revised)")
    write(api, ws, "books/war.json",
          {"title": "War", "slug": "war", "author": "@/authors/tolstoy.json"})
    write(api, ws, "authors/tolstoy.json",
          {"name": "Tolstoy", "slug": "tolstoy", "favourite_book": "@/books/war.json"})
    assert api.delete(f"{draft_url(ws)}/files/books/dalloway.json").status_code == 204

    planned = plan(api, ws)

    assert planned["state"] == "planned"
    assert (planned["workspace"], planned["user"]) == (ws, "alice")
    assert isinstance(planned["pipeline_id"], str)
    assert planned["main_version"] == api.ok("GET", f"/workspaces/{ws}")["main_version"]
    assert planned["draft_version"] == api.ok("GET", f"{draft_url(ws)}/changes")["version"]
    assert [p["phase"] for p in planned["phases"]] == ["edit", "create", "delete", "backfill"]
    by_phase: dict[str, int] = {}
    for entry in planned["entries"]:
        assert set(entry) >= {"path", "phase", "operation", "deferred_fields"}
        assert isinstance(entry["operation"], dict)
        by_phase[entry["phase"]] = by_phase.get(entry["phase"], 0) + 1
    assert by_phase == {p["phase"]: p["entries"] for p in planned["phases"]}
    creates = {e["path"]: e for e in planned["entries"] if e["phase"] == "create"}
    assert set(creates) == {"books/war.json", "authors/tolstoy.json"}
    assert any(e["deferred_fields"] for e in creates.values())

    status = api.ok("GET", f"/pipelines/{planned['pipeline_id']}")
    assert status["state"] == "planned"
    assert status["counts"]["create"] == {"planned": 2, "published": 0, "failed": 0,
                                          "skipped": 0}


def test_plan_only_phases_that_have_entries(api: Publishd, ws: str) -> None:
    write(api, ws, "authors/tolstoy.json", {"name": "Tolstoy", "slug": "tolstoy"})
    planned = plan(api, ws)
    assert planned["phases"] == [{"phase": "create", "entries": 1}]
    assert [e["path"] for e in planned["entries"]] == ["authors/tolstoy.json"]


def test_plan_errors(api: Publishd, ws: str) -> None:
    assert_error(api.post(f"{draft_url(ws)}/plans"), 422, "nothing_to_publish")
    write(api, ws, "books/war.json",
          {"title": "War", "slug": "war", "author": "@/authors/nobody.json"})
    error = assert_error(api.post(f"{draft_url(ws)}/plans"), 422, "dangling_references")
    assert error["details"] == [
        {"source": "books/war.json", "field": "author", "target": "authors/nobody.json"}
    ] or all(set(d) >= {"source", "field", "target"} for d in error["details"])
    assert {d["source"] for d in error["details"]} == {"books/war.json"}
    assert_error(api.post(f"{draft_url(new_workspace_id())}/plans"), 404, "not_found")
    assert_error(api.post(f"{draft_url(ws)}/publish"), 422, "dangling_references")
    assert api.ok("GET", f"/workspaces/{ws}")["publishing"] is None


def test_run_then_wait_publishes_to_the_service(
    api: Publishd, ws: str, sandbox: Sandbox
) -> None:
    edit_title(api, ws, "books/old-man.json", "Old Man (revised)")
    write(api, ws, "authors/tolstoy.json", {"name": "Tolstoy", "slug": "tolstoy"})
    pipeline_id = plan(api, ws)["pipeline_id"]

    accepted = api.ok("POST", f"/pipelines/{pipeline_id}/run", 202)
    assert accepted == {"pipeline_id": pipeline_id, "state": "running"} or (
        accepted["pipeline_id"] == pipeline_id and accepted["state"] == "running"
    )
    status = api.wait_state(pipeline_id, "completed", "completed_with_errors", "failed")

    assert status["state"] == "completed", status
    assert status["counts"]["edit"] == {"planned": 0, "published": 1, "failed": 0, "skipped": 0}
    assert status["counts"]["create"]["published"] == 1
    assert status["errors"] == []
    assert status["created_at"] and status["started_at"] and status["finished_at"]
    assert sandbox.item_by("books", "slug", "old-man")["fieldData"]["title"] == "Old Man (revised)"
    tolstoy = sandbox.item_by("authors", "slug", "tolstoy")
    assert main_file(api, ws, "authors/tolstoy.json")["id"] == tolstoy["id"]
    assert api.ok("GET", f"{draft_url(ws)}/changes")["changes"] == []
    assert api.ok("GET", f"/workspaces/{ws}")["publishing"] is None
    # a completed pipeline can't run again
    assert_error(api.post(f"/pipelines/{pipeline_id}/run"), 409, "conflict")
    assert_error(api.post(f"/pipelines/{pipeline_id}/cancel"), 409, "conflict")
    assert_error(api.post(f"/pipelines/{pipeline_id}/retry"), 409, "conflict")


def test_run_with_wait_answers_the_final_status(api: Publishd, ws: str, sandbox: Sandbox) -> None:
    write(api, ws, "authors/tolstoy.json", {"name": "Tolstoy", "slug": "tolstoy"})
    pipeline_id = plan(api, ws)["pipeline_id"]
    status = api.ok("POST", f"/pipelines/{pipeline_id}/run?wait=true")
    assert status["pipeline_id"] == pipeline_id
    assert status["state"] == "completed"
    assert status["phase"] == "create"
    assert status["workspace"] == ws and status["user"] == "alice"
    assert sandbox.item_by("authors", "slug", "tolstoy")["fieldData"]["name"] == "Tolstoy"


def test_publish_plans_and_runs(api: Publishd, ws: str, sandbox: Sandbox) -> None:
    write(api, ws, "authors/tolstoy.json", {"name": "Tolstoy", "slug": "tolstoy"})
    accepted = api.ok("POST", f"{draft_url(ws)}/publish", 202)
    assert accepted["state"] == "running"
    assert api.wait_state(accepted["pipeline_id"], "completed")["counts"]["create"][
        "published"
    ] == 1

    write(api, ws, "authors/pushkin.json", {"name": "Pushkin", "slug": "pushkin"})
    status = api.ok("POST", f"{draft_url(ws)}/publish?wait=true")
    assert status["state"] == "completed"
    assert status["pipeline_id"] != accepted["pipeline_id"]
    assert {a["fieldData"]["slug"] for a in sandbox.items("authors")} == {
        "hemingway", "woolf", "tolstoy", "pushkin",
    }
    assert_error(api.post(f"{draft_url(ws)}/publish"), 422, "nothing_to_publish")


def test_stale_plan_when_the_draft_or_main_moved(api: Publishd, ws: str) -> None:
    write(api, ws, "authors/tolstoy.json", {"name": "Tolstoy", "slug": "tolstoy"})
    first = plan(api, ws)["pipeline_id"]
    write(api, ws, "authors/tolstoy.json", {"name": "Tolstoi", "slug": "tolstoy"})
    error = assert_error(api.post(f"/pipelines/{first}/run"), 409, "stale_plan")
    assert error["details"]["pipeline_id"] == first
    assert api.ok("GET", f"/pipelines/{first}")["state"] == "stale"

    second = plan(api, ws, "alice")["pipeline_id"]
    write(api, ws, "authors/pushkin.json", {"name": "Pushkin", "slug": "pushkin"}, user="bob")
    assert api.ok("POST", f"{draft_url(ws, 'bob')}/publish?wait=true")["state"] == "completed"
    assert_error(api.post(f"/pipelines/{second}/run?wait=true"), 409, "stale_plan")


def test_a_running_pipeline_holds_the_workspace(
    api: Publishd, ws: str, gate_closed: Sandbox
) -> None:
    edit_title(api, ws, "books/old-man.json", "Held")
    running = api.ok("POST", f"{draft_url(ws)}/publish", 202)["pipeline_id"]
    api.wait_for("a write held at the gate", lambda: gate_closed.gate.held)
    assert api.ok("GET", f"/workspaces/{ws}")["publishing"] == running
    assert api.ok("GET", f"/pipelines/{running}")["state"] == "running"

    write(api, ws, "authors/tolstoy.json", {"name": "Tolstoy", "slug": "tolstoy"}, user="bob")
    other = plan(api, ws, "bob")["pipeline_id"]
    before = api.head()
    error = assert_error(api.post(f"/pipelines/{other}/run"), 409, "publish_in_progress")
    assert error["details"]["pipeline_id"] == running
    assert_error(api.post(f"{draft_url(ws, 'bob')}/publish"), 409, "publish_in_progress")
    assert_error(api.post(f"/workspaces/{ws}/pulls"), 409, "publish_in_progress")
    assert_error(api.put(f"/workspaces/{ws}/connector",
                         json={"type": "sandbox", "base_url": gate_closed.url}),
                 409, "publish_in_progress")
    assert_error(api.post(f"/pipelines/{running}/run"), 409, "conflict")
    assert_error(api.post(f"/pipelines/{running}/retry"), 409, "conflict")
    assert api.ok("GET", f"/pipelines/{other}")["state"] == "planned"
    bobs = api.ok("GET", f"/pipelines?workspace={ws}&user=bob")["pipelines"]
    assert [p["pipeline_id"] for p in bobs] == [other], "a refused publish left a plan behind"
    # the refused commands recorded nothing; the worker may have renewed its lease meanwhile
    since = api.runtime.app.recorder.select_notifications(before + 1, 1000)
    assert {str(n.originator_id) for n in since} <= {running}, [n.topic for n in since]

    gate_closed.gate.open()
    assert api.wait_state(running, "completed")["counts"]["edit"]["published"] == 1
    assert api.ok("GET", f"/workspaces/{ws}")["publishing"] is None
    # main moved under bob's plan meanwhile: plan again
    assert_error(api.post(f"/pipelines/{other}/run"), 409, "stale_plan")
    assert api.ok("POST", f"{draft_url(ws, 'bob')}/publish?wait=true")["state"] == "completed"


def test_cancel_a_running_pipeline(api: Publishd, ws: str, gate_closed: Sandbox) -> None:
    edit_title(api, ws, "books/old-man.json", "Cancelled")
    write(api, ws, "authors/tolstoy.json", {"name": "Tolstoy", "slug": "tolstoy"})
    running = api.ok("POST", f"{draft_url(ws)}/publish", 202)["pipeline_id"]
    api.wait_for("a write held at the gate", lambda: gate_closed.gate.held)

    cancelled = api.ok("POST", f"/pipelines/{running}/cancel", 202)
    assert cancelled["pipeline_id"] == running
    gate_closed.gate.open()
    status = api.wait_state(running, "cancelled")
    assert status["counts"]["create"]["published"] == 0
    assert [a["fieldData"]["slug"] for a in gate_closed.items("authors")] == [
        "hemingway", "woolf",
    ]
    assert api.ok("GET", f"/workspaces/{ws}")["publishing"] is None


def test_cancel_a_planned_pipeline(api: Publishd, ws: str) -> None:
    write(api, ws, "authors/tolstoy.json", {"name": "Tolstoy", "slug": "tolstoy"})
    pipeline_id = plan(api, ws)["pipeline_id"]
    assert api.ok("POST", f"/pipelines/{pipeline_id}/cancel", 202)["pipeline_id"] == pipeline_id
    assert api.wait_state(pipeline_id, "cancelled")["state"] == "cancelled"


def failing_draft(api: Publishd, ws: str) -> None:
    """One create the sandbox refuses (a reference to no item) and one it accepts."""
    write(api, ws, "books/war.json", {"title": "War", "slug": "war", "author": "no-such-id"})
    write(api, ws, "books/anna.json", {"title": "Anna", "slug": "anna"})


def test_errors_entries_and_retry(api: Publishd, ws: str, sandbox: Sandbox) -> None:
    failing_draft(api, ws)
    status = api.ok("POST", f"{draft_url(ws)}/publish?wait=true")
    pipeline_id = status["pipeline_id"]
    assert status["state"] == "completed_with_errors"
    assert status["counts"]["create"] == {"planned": 0, "published": 1, "failed": 1, "skipped": 0}
    [error] = status["errors"]
    assert (error["path"], error["phase"]) == ("books/war.json", "create")
    assert error["message"]

    entries = api.ok("GET", f"/pipelines/{pipeline_id}/entries")["entries"]
    assert {(e["path"], e["phase"], e["status"]) for e in entries} == {
        ("books/war.json", "create", "failed"),
        ("books/anna.json", "create", "published"),
    }
    published = next(e for e in entries if e["status"] == "published")
    assert published["record_id"] == sandbox.item_by("books", "slug", "anna")["id"]
    assert published["error"] is None
    failed = api.ok("GET", f"/pipelines/{pipeline_id}/entries?status=failed")["entries"]
    assert [(e["path"], e["record_id"]) for e in failed] == [("books/war.json", None)]
    assert failed[0]["error"]
    assert api.ok("GET", f"/pipelines/{pipeline_id}/entries?phase=edit")["entries"] == []
    assert len(api.ok("GET", f"/pipelines/{pipeline_id}/entries?phase=create")["entries"]) == 2
    assert_error(api.get(f"/pipelines/{pipeline_id}/entries?phase=nope"), 422, "invalid_request")
    assert_error(api.get(f"/pipelines/{pipeline_id}/entries?status=nope"), 422,
                 "invalid_request")

    # fix the cause in the service, then retry the failed entry
    hem = sandbox.ids["hemingway"]
    sandbox.call("PUT", "/collections/books", json={"referenceFields": {}})
    del hem
    retried = api.ok("POST", f"/pipelines/{pipeline_id}/retry", 202)
    assert retried["pipeline_id"] == pipeline_id
    final = api.wait_state(pipeline_id, "completed", "completed_with_errors")
    assert final["state"] == "completed", final
    assert sandbox.item_by("books", "slug", "war")["fieldData"]["author"] == "no-such-id"


def test_retry_with_wait_and_stale_retry(api: Publishd, ws: str) -> None:
    failing_draft(api, ws)
    failed = api.ok("POST", f"{draft_url(ws)}/publish?wait=true")
    assert failed["state"] == "completed_with_errors"
    write(api, ws, "authors/tolstoy.json", {"name": "Tolstoy", "slug": "tolstoy"}, user="bob")
    assert api.ok("POST", f"{draft_url(ws, 'bob')}/publish?wait=true")["state"] == "completed"
    assert_error(api.post(f"/pipelines/{failed['pipeline_id']}/retry"), 409, "stale_plan")

    failing_draft(api, ws, )
    again = api.ok("POST", f"{draft_url(ws)}/publish?wait=true")
    retried = api.ok("POST", f"/pipelines/{again['pipeline_id']}/retry?wait=true")
    assert retried["state"] == "completed_with_errors"  # the service still refuses it
    assert retried["counts"]["create"]["failed"] == 1


def test_unknown_pipelines_are_not_found(api: Publishd) -> None:
    for pipeline_id in ("00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        for method, suffix in [("GET", ""), ("GET", "/entries"), ("POST", "/run"),
                               ("POST", "/cancel"), ("POST", "/retry")]:
            response = api.request(method, f"/pipelines/{pipeline_id}{suffix}")
            assert_error(response, 404, "not_found")


# --- §5 status lists
def test_list_pipelines_filters_and_pages(api: Publishd, ws: str) -> None:
    ids = []
    for n, user in enumerate(["alice", "bob", "alice"]):
        write(api, ws, f"authors/a{n}.json", {"name": f"A{n}", "slug": f"a{n}"}, user=user)
        ids.append(plan(api, ws, user)["pipeline_id"])
    assert api.ok("POST", f"/pipelines/{ids[1]}/run?wait=true")["state"] == "completed"

    listed = api.ok("GET", f"/pipelines?workspace={ws}")["pipelines"]
    assert [p["pipeline_id"] for p in listed] == ids[::-1]
    assert all(set(p) >= {"pipeline_id", "workspace", "user", "state", "counts"} for p in listed)
    alice = api.ok("GET", f"/pipelines?workspace={ws}&user=alice")["pipelines"]
    assert [p["pipeline_id"] for p in alice] == [ids[2], ids[0]]
    done = api.ok("GET", f"/pipelines?workspace={ws}&state=completed")["pipelines"]
    assert [p["pipeline_id"] for p in done] == [ids[1]]
    first = api.ok("GET", f"/pipelines?workspace={ws}&limit=1")["pipelines"]
    assert [p["pipeline_id"] for p in first] == [ids[2]]
    rest = api.ok("GET", f"/pipelines?workspace={ws}&before={ids[2]}")["pipelines"]
    assert [p["pipeline_id"] for p in rest] == [ids[1], ids[0]]
    last = api.ok("GET", f"/pipelines?workspace={ws}&before={ids[1]}&limit=5")["pipelines"]
    assert [p["pipeline_id"] for p in last] == [ids[0]]
    assert api.ok("GET", f"/pipelines?workspace={new_workspace_id()}")["pipelines"] == []

    for query in ("state=nope", "limit=0", "limit=501", "limit=x"):
        assert_error(api.get(f"/pipelines?workspace={ws}&{query}"), 422, "invalid_request")


# --- §7 indexes
def test_file_index_both_lookups(api: Publishd, ws: str, sandbox: Sandbox) -> None:
    woolf = sandbox.ids["woolf"]
    base = f"/workspaces/{ws}/file-index"
    by_id = api.ok("GET", f"{base}?folder=authors&record_id={woolf}")
    assert (by_id["folder"], by_id["record_id"], by_id["filename"]) == (
        "authors", woolf, "woolf.json",
    )
    assert "last_seen_at" in by_id
    assert api.ok("GET", f"{base}?folder=authors&filename=woolf.json") == by_id

    assert_error(api.get(f"{base}?folder=authors&record_id=nope"), 404, "not_found")
    assert_error(api.get(f"{base}?folder=authors&filename=nope.json"), 404, "not_found")
    for query in ("folder=authors", "record_id=x", f"folder=authors&record_id={woolf}&filename=x",
                  ""):
        assert_error(api.get(f"{base}?{query}"), 422, "invalid_request")


def test_references_by_target_and_by_record(api: Publishd, ws: str, sandbox: Sandbox) -> None:
    base = f"/workspaces/{ws}/references"
    refs = api.ok("GET", f"{base}?target=@/authors/woolf.json")["references"]
    assert sorted(r["source_path"] for r in refs) == ["books/dalloway.json",
                                                      "books/lighthouse.json"]
    for r in refs:
        assert (r["branch"], r["target_folder"], r["target_filename"]) == (
            "main", "authors", "woolf.json",
        )
        assert "target_record_id" in r
    by_record = api.ok(
        "GET", f"{base}?folder=books&record_id={sandbox.ids['lighthouse']}"
    )["references"]
    assert [(r["source_path"], r["target_folder"]) for r in by_record] == [
        ("menus/main.json", "books")
    ]
    assert api.ok("GET", f"{base}?target=@/authors/nobody.json")["references"] == []

    for query in ("", "folder=books", "record_id=x", "target=@/a/b.json&folder=a&record_id=x"):
        assert_error(api.get(f"{base}?{query}"), 422, "invalid_request")
    assert_error(api.get(f"{base}?target=authors/woolf.json"), 422, "invalid_path")
    assert_error(api.get(f"/workspaces/{new_workspace_id()}/references?target=@/a/b.json"), 404,
                 "not_found")


# --- §9 operations
def test_healthz_needs_no_token(api: Publishd) -> None:
    response = api.get("/healthz", auth=False)
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_metrics_are_prometheus_text(api: Publishd, ws: str) -> None:
    write(api, ws, "authors/tolstoy.json", {"name": "Tolstoy", "slug": "tolstoy"})
    assert api.ok("POST", f"{draft_url(ws)}/publish?wait=true")["state"] == "completed"

    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    samples = {
        line.split(" ")[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert "# TYPE publishd_pipelines gauge" in text
    assert samples['publishd_pipelines{state="completed"}'] >= 1
    assert samples['publishd_entries{status="published"}'] >= 1
    lags = [k for k in samples if k.startswith("publishd_projection_lag_events{")]
    assert lags and all(samples[k] >= 0 for k in lags)
    assert samples["publishd_open_streams"] >= 0
    assert "publishd_connector_latency_seconds" in text
    assert_error(api.get("/metrics", auth=False), 401, "unauthorized")
    assert_error(api.get("/metrics", token=api.token(ws)), 403, "forbidden")


def test_openapi_lists_every_path(api: Publishd) -> None:
    response = api.get("/openapi.json", auth=False)
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    expected = {
        ("post", "/workspaces"),
        ("get", "/workspaces/{ws}"),
        ("put", "/workspaces/{ws}/connector"),
        ("put", "/workspaces/{ws}/schemas/{folder}"),
        ("post", "/workspaces/{ws}/pulls"),
        ("get", "/workspaces/{ws}/files/{path}"),
        ("put", "/workspaces/{ws}/drafts/{user}/files/{path}"),
        ("delete", "/workspaces/{ws}/drafts/{user}/files/{path}"),
        ("get", "/workspaces/{ws}/drafts/{user}/changes"),
        ("delete", "/workspaces/{ws}/drafts/{user}"),
        ("post", "/workspaces/{ws}/drafts/{user}/plans"),
        ("post", "/workspaces/{ws}/drafts/{user}/publish"),
        ("post", "/pipelines/{pipeline_id}/run"),
        ("post", "/pipelines/{pipeline_id}/cancel"),
        ("post", "/pipelines/{pipeline_id}/retry"),
        ("get", "/pipelines/{pipeline_id}"),
        ("get", "/pipelines"),
        ("get", "/pipelines/{pipeline_id}/entries"),
        ("get", "/pipelines/{pipeline_id}/events"),
        ("get", "/workspaces/{ws}/events"),
        ("get", "/events"),
        ("post", "/stream-tickets"),
        ("get", "/workspaces/{ws}/file-index"),
        ("get", "/workspaces/{ws}/references"),
        ("get", "/healthz"),
        ("get", "/metrics"),
        ("get", "/openapi.json"),
    }
    listed = {(method, path) for path, ops in paths.items() for method in ops}
    assert expected - listed == set()
    for path, ops in paths.items():
        names = set(re.findall(r"{(\w+)}", path))
        for op in ops.values():
            assert op["responses"], path
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == names, path
    for ref in re.findall(r'"\$ref":\s*"#/components/schemas/(\w+)"', response.text):
        assert ref in document["components"]["schemas"]
