"""The queries the web console asks for (API.md §14), over real HTTP.

``GET /workspaces``, ``GET /workspaces/{ws}/drafts``, paged ``GET
/pipelines/{id}/entries`` and ``GET /pipelines/{id}/versions/{n}``: each
checked against what the commands wrote, and each refusing what it must.
"""

from __future__ import annotations

import pytest

from tests.api.api_support import (
    Publishd,
    assert_error,
    draft_url,
    edit_title,
    new_workspace_id,
    plan,
    write,
)

pytestmark = pytest.mark.timeout(120)


def test_an_admin_lists_every_workspace_and_a_workspace_token_its_own(
    api: Publishd, ws: str
) -> None:
    other = new_workspace_id()
    api.ok(
        "POST",
        "/workspaces",
        201,
        json={"id": other, "connector": {"type": "sandbox", "base_url": "http://127.0.0.1:9/"}},
    )

    everything = api.ok("GET", "/workspaces")["workspaces"]
    own = api.ok("GET", "/workspaces", token=api.token(ws, "read"))["workspaces"]

    ids = [w["id"] for w in everything]
    assert {ws, other} <= set(ids) and ids == sorted(ids)
    info = api.ok("GET", f"/workspaces/{ws}")
    assert own == [
        {
            "id": ws,
            "main_version": info["main_version"],
            "publishing": None,
            "folders": info["folders"],
        }
    ]
    assert_error(api.get("/workspaces", auth=False), 401, "unauthorized")
    assert_error(api.get("/workspaces", token=api.token(ws, "write")), 403, "forbidden")


def test_drafts_lists_the_users_with_changes_and_how_many(api: Publishd, ws: str) -> None:
    edit_title(api, ws, "books/old-man.json", "Old Man (revised)")
    write(api, ws, "books/new.json", {"title": "New", "slug": "new"})
    assert api.delete(f"{draft_url(ws, 'bob')}/files/books/dalloway.json").status_code == 204
    write(api, ws, "books/gone.json", {"title": "Gone", "slug": "gone"}, user="carol")
    assert api.delete(f"{draft_url(ws, 'carol')}/files/books/gone.json").status_code == 204

    drafts = api.ok("GET", f"/workspaces/{ws}/drafts")["drafts"]

    # carol added a file and dropped it again: her draft changes nothing
    assert drafts == [{"user": "alice", "changes": 2}, {"user": "bob", "changes": 1}]
    assert_error(api.get(f"/workspaces/{new_workspace_id()}/drafts"), 404, "not_found")
    foreign = api.token(new_workspace_id(), "read")
    assert_error(api.get(f"/workspaces/{ws}/drafts", token=foreign), 404, "not_found")


def test_entries_page_through_a_pipeline_in_phase_then_plan_order(api: Publishd, ws: str) -> None:
    for n in range(7):
        write(api, ws, f"authors/a{n}.json", {"name": f"A{n}", "slug": f"a{n}"})
    edit_title(api, ws, "books/old-man.json", "Old Man (revised)")
    pipeline_id = plan(api, ws)["pipeline_id"]
    everything = api.ok("GET", f"/pipelines/{pipeline_id}/entries")
    assert everything["next"] is None and len(everything["entries"]) == 8

    pages, after = [], None
    while True:
        params = {"limit": 3} | ({"after": after} if after else {})
        page = api.ok("GET", f"/pipelines/{pipeline_id}/entries", params=params)
        pages.append(page["entries"])
        after = page["next"]
        if after is None:
            break

    assert [len(p) for p in pages] == [3, 3, 2]
    assert [e for p in pages for e in p] == everything["entries"]
    created = api.ok(
        "GET", f"/pipelines/{pipeline_id}/entries", params={"limit": 100, "phase": "create"}
    )
    assert [e["path"] for e in created["entries"]] == [
        e["path"] for e in everything["entries"] if e["phase"] == "create"
    ]
    for bad in ("x", "1", "1.x", "-1.2", "1.2.3"):
        response = api.get(f"/pipelines/{pipeline_id}/entries", params={"after": bad})
        assert_error(response, 422, "invalid_request")
    bad_limit = api.get(f"/pipelines/{pipeline_id}/entries", params={"limit": 0})
    assert_error(bad_limit, 422, "invalid_request")


def test_a_pipeline_at_each_of_its_events(api: Publishd, ws: str) -> None:
    edit_title(api, ws, "books/old-man.json", "Old Man (revised)")
    pipeline_id = plan(api, ws)["pipeline_id"]
    final = api.ok("POST", f"/pipelines/{pipeline_id}/run", params={"wait": "true"})
    assert final["state"] == "completed"
    with api.http.stream(
        "GET",
        f"/pipelines/{pipeline_id}/events",
        headers={"Authorization": f"Bearer {api.admin_token}", "Accept": "application/x-ndjson"},
    ) as response:
        types = [line for line in response.iter_lines() if line.strip()]
    count = len(types)

    first = api.ok("GET", f"/pipelines/{pipeline_id}/versions/1")
    planned = api.ok("GET", f"/pipelines/{pipeline_id}/versions/2")
    last = api.ok("GET", f"/pipelines/{pipeline_id}/versions/{count}")

    assert (first["version"], first["state"], first["counts"]) == (
        1,
        "planned",
        {"edit": {"planned": 0, "published": 0, "failed": 0, "skipped": 0}},
    )
    assert planned["counts"]["edit"]["planned"] == 1
    assert (last["version"], last["state"]) == (count, "completed")
    assert last["counts"] == final["counts"]
    assert (last["workspace"], last["user"]) == (ws, "alice")
    assert_error(api.get(f"/pipelines/{pipeline_id}/versions/{count + 1}"), 404, "not_found")
    for bad in ("0", "x", "-1", "9" * 30):
        assert_error(api.get(f"/pipelines/{pipeline_id}/versions/{bad}"), 422, "invalid_request")
    foreign = api.token(new_workspace_id(), "read")
    assert_error(api.get(f"/pipelines/{pipeline_id}/versions/1", token=foreign), 404, "not_found")


def test_the_console_is_served_at_the_root_without_shadowing_the_api(api: Publishd) -> None:
    page = api.get("/", auth=False)
    module = api.get("/console/js/app.js", auth=False)

    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/console/js/app.js">' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert module.status_code == 200 and "javascript" in module.headers["content-type"]
    assert_error(api.get("/console/nothing-here.js", auth=False), 404, "not_found")
    assert api.get("/openapi.json", auth=False).status_code == 200
    assert api.get("/healthz", auth=False).json() == {"status": "ok"}
