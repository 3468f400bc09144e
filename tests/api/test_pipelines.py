"""API.md §4-5 over real HTTP: plan, run, publish, cancel, retry, status lists; errors.

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
    draft_url,
    edit_title,
    main_file,
    new_workspace_id,
    plan,
    write,
)

pytestmark = pytest.mark.timeout(120)


def test_plan_all_four_phases_in_order(api: Publishd, ws: str) -> None:
    edit_title(api, ws, "books/old-man.json", "Old Man (revised)")
    write(
        api,
        ws,
        "books/war.json",
        {"title": "War", "slug": "war", "author": "@/authors/tolstoy.json"},
    )
    write(
        api,
        ws,
        "authors/tolstoy.json",
        {"name": "Tolstoy", "slug": "tolstoy", "favourite_book": "@/books/war.json"},
    )
    assert api.delete(f"{draft_url(ws)}/files/books/dalloway.json").status_code == 204

    planned = plan(api, ws)

    assert planned["state"] == "planned"
    assert (planned["workspace"], planned["user"]) == (ws, "alice")
    assert isinstance(planned["pipeline_id"], str)
    assert planned["main_version"] == api.ok("GET", f"/workspaces/{ws}")["main_version"]
    assert planned["draft_version"] == api.ok("GET", f"{draft_url(ws)}/changes")["version"]
    assert [p["phase"] for p in planned["phases"]] == ["edit", "create", "delete", "backfill"]
    # Tolstoy first, then War with its author resolved: two waves of one request each
    assert {p["phase"]: p["calls"] for p in planned["phases"]}["create"] == 2
    assert planned["estimated_calls"] == sum(p["calls"] for p in planned["phases"])
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
    assert status["counts"]["create"] == {"planned": 2, "published": 0, "failed": 0, "skipped": 0}


def test_plan_only_phases_that_have_entries(api: Publishd, ws: str) -> None:
    write(api, ws, "authors/tolstoy.json", {"name": "Tolstoy", "slug": "tolstoy"})
    planned = plan(api, ws)
    assert planned["phases"] == [{"phase": "create", "entries": 1, "calls": 1}]
    assert planned["estimated_calls"] == 1
    assert [e["path"] for e in planned["entries"]] == ["authors/tolstoy.json"]
    assert planned["entries"][0]["diff"] == [
        {"field": "name", "before": None, "after": "Tolstoy"},
        {"field": "slug", "before": None, "after": "tolstoy"},
    ]


def test_a_plan_shows_each_edit_as_main_before_and_the_value_sent(api: Publishd, ws: str) -> None:
    write(api, ws, "authors/tolstoy.json", {"name": "Tolstoy", "slug": "tolstoy"})
    api.ok("POST", f"/pipelines/{plan(api, ws)['pipeline_id']}/run?wait=true")
    on_main = api.ok("GET", f"/workspaces/{ws}/files/authors/tolstoy.json")
    write(api, ws, "authors/tolstoy.json", {**on_main, "name": "Lev Tolstoy"})
    for n in range(3):
        write(api, ws, f"authors/a{n}.json", {"name": f"A{n}", "slug": f"a{n}"})

    planned = api.ok(
        "POST", f"{draft_url(ws)}/plans", json={"on_upstream_change": "overwrite"}, status=201
    )

    assert planned["on_upstream_change"] == "overwrite"
    assert planned["phases"] == [
        {"phase": "edit", "entries": 1, "calls": 1},
        {"phase": "create", "entries": 3, "calls": 1},  # one bulk create of the three
    ]
    assert planned["estimated_calls"] == 2
    edit = next(e for e in planned["entries"] if e["phase"] == "edit")
    assert edit["diff"] == [{"field": "name", "before": "Tolstoy", "after": "Lev Tolstoy"}]
    bad = api.post(f"{draft_url(ws)}/plans", json={"on_upstream_change": "sometimes"})
    assert_error(bad, 422, "invalid_request")


def test_plan_errors(api: Publishd, ws: str) -> None:
    assert_error(api.post(f"{draft_url(ws)}/plans"), 422, "nothing_to_publish")
    write(
        api,
        ws,
        "books/war.json",
        {"title": "War", "slug": "war", "author": "@/authors/nobody.json"},
    )
    error = assert_error(api.post(f"{draft_url(ws)}/plans"), 422, "dangling_references")
    assert error["details"] == [
        {"source": "books/war.json", "field": "author", "target": "authors/nobody.json"}
    ] or all(set(d) >= {"source", "field", "target"} for d in error["details"])
    assert {d["source"] for d in error["details"]} == {"books/war.json"}
    assert_error(api.post(f"{draft_url(new_workspace_id())}/plans"), 404, "not_found")
    assert_error(api.post(f"{draft_url(ws)}/publish"), 422, "dangling_references")
    assert api.ok("GET", f"/workspaces/{ws}")["publishing"] is None


def test_run_then_wait_publishes_to_the_service(api: Publishd, ws: str, sandbox: Sandbox) -> None:
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
    assert (
        api.wait_state(accepted["pipeline_id"], "completed")["counts"]["create"]["published"] == 1
    )

    write(api, ws, "authors/pushkin.json", {"name": "Pushkin", "slug": "pushkin"})
    status = api.ok("POST", f"{draft_url(ws)}/publish?wait=true")
    assert status["state"] == "completed"
    assert status["pipeline_id"] != accepted["pipeline_id"]
    assert {a["fieldData"]["slug"] for a in sandbox.items("authors")} == {
        "hemingway",
        "woolf",
        "tolstoy",
        "pushkin",
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
    assert_error(
        api.put(
            f"/workspaces/{ws}/connector", json={"type": "sandbox", "base_url": gate_closed.url}
        ),
        409,
        "publish_in_progress",
    )
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
        "hemingway",
        "woolf",
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
    assert_error(api.get(f"/pipelines/{pipeline_id}/entries?status=nope"), 422, "invalid_request")

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

    failing_draft(
        api,
        ws,
    )
    again = api.ok("POST", f"{draft_url(ws)}/publish?wait=true")
    retried = api.ok("POST", f"/pipelines/{again['pipeline_id']}/retry?wait=true")
    assert retried["state"] == "completed_with_errors"  # the service still refuses it
    assert retried["counts"]["create"]["failed"] == 1


def test_unknown_pipelines_are_not_found(api: Publishd) -> None:
    for pipeline_id in ("00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        for method, suffix in [
            ("GET", ""),
            ("GET", "/entries"),
            ("POST", "/run"),
            ("POST", "/cancel"),
            ("POST", "/retry"),
        ]:
            response = api.request(method, f"/pipelines/{pipeline_id}{suffix}")
            assert_error(response, 404, "not_found")


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


def test_a_refreshed_plan_starts_from_the_service(api: Publishd, ws: str, sandbox: Sandbox) -> None:
    on_main = main_file(api, ws, "books/old-man.json")
    write(api, ws, "books/old-man.json", {**on_main, "title": "Old Man (revised)"})
    colleague = {"fieldData": {"title": "Old Man (colleague)"}}
    sandbox.call("PATCH", f"/collections/books/items/{sandbox.ids['oldman']}", json=colleague)

    def edit_diff(planned: dict[str, Any]) -> list[dict[str, Any]]:
        entry = next(e for e in planned["entries"] if e["phase"] == "edit")
        diff: list[dict[str, Any]] = entry["diff"]
        return diff

    stale = plan(api, ws)  # main still holds what the last pull saw
    assert edit_diff(stale) == [
        {"field": "title", "before": "Old Man", "after": "Old Man (revised)"}
    ]
    fresh = api.ok("POST", f"{draft_url(ws)}/plans", 201, json={"refresh": True})
    assert edit_diff(fresh) == [
        {"field": "title", "before": "Old Man (colleague)", "after": "Old Man (revised)"}
    ]
    assert main_file(api, ws, "books/old-man.json")["title"] == "Old Man (colleague)"
    [refresh, *_] = api.ok("GET", f"/workspaces/{ws}/pulls")["pulls"]
    assert refresh["state"] == "completed" and refresh["updated"] == 1
    assert refresh["scope"] == {
        "records": [{"folder": "books", "record_id": sandbox.ids["oldman"]}]
    }
