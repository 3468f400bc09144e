"""The web console in a real headless Chromium, against a real publishd and sandbox.

Every screen is driven as a person would (links, buttons, Enter), and what it
shows is checked against the API: the plan's phases, the pipeline's counts,
its events. Screenshots of each screen go to ``build/screenshots/``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from interfaces.demo import sample_data
from tests.browser.conftest import Library, Served

pytestmark = pytest.mark.timeout(120)

USER = sample_data.DRAFT_USER
RUN_TIMEOUT = 30_000
EXTRA_AUTHORS = 150


@pytest.fixture(autouse=True)
def no_script_errors(page: Page) -> Iterator[None]:
    """Every test fails on an uncaught error in the console's scripts."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield
    assert errors == []


def sign_in(page: Page, publishd: Served) -> None:
    page.goto(publishd.url + "/")
    page.get_by_label("Token").fill(publishd.admin_token)
    page.get_by_label("Token").press("Enter")
    expect(page.get_by_role("heading", name="Workspaces")).to_be_visible()


def open_draft(page: Page, publishd: Served, ws: str, user: str = USER) -> None:
    sign_in(page, publishd)
    page.get_by_role("link", name=ws).click()
    page.locator("#drafts").get_by_role("link", name=user).click()
    expect(page.get_by_role("heading", name=f"Draft of {user}")).to_be_visible()


def plan_in_console(page: Page) -> str:
    page.get_by_role("button", name="Plan publish").click()
    expect(page.locator("#phases")).to_be_visible()
    return page.url.rsplit("/", 1)[1]


def bars(page: Page) -> dict[str, dict[str, int]]:
    found = {}
    for bar in page.locator("#progress .bar").all():
        data = bar.evaluate("el => ({...el.dataset})")
        phase = data.pop("phase")
        found[phase] = {k: int(v) for k, v in data.items()}
    return found


def wait_for_state(page: Page, state: str, timeout: int = RUN_TIMEOUT) -> None:
    expect(page.locator(f'#run-state [data-state="{state}"]')).to_be_visible(timeout=timeout)


def shot(page: Page, screenshots: Path, name: str, height: int | None = None) -> None:
    """The window as it is (``height``: only its top, to keep a busy screen's PNG small)."""
    size = page.viewport_size
    clip = None
    if height is not None and size is not None:
        clip = {"x": 0, "y": 0, "width": size["width"], "height": height}
    page.screenshot(path=str(screenshots / f"{name}.png"), clip=clip)


def api_counts(publishd: Served, pipeline_id: str) -> dict[str, Any]:
    status = publishd.server.call("GET", f"/pipelines/{pipeline_id}")
    return {
        phase: {
            "total": sum(c.values()),
            "published": c["published"],
            "failed": c["failed"],
            "skipped": c["skipped"],
        }
        for phase, c in status["counts"].items()
    }


def test_sign_in_keeps_the_token_out_of_the_url_and_shows_errors(
    page: Page, publishd: Served, screenshots: Path
) -> None:
    page.goto(publishd.url + "/")
    shot(page, screenshots, "sign-in")
    page.get_by_label("Token").fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#sign-in .error")).to_contain_text("the token is unknown or revoked")

    sign_in(page, publishd)

    assert publishd.admin_token not in page.url
    stored = page.evaluate("sessionStorage.getItem('publishd.token')")
    assert stored == publishd.admin_token
    shot(page, screenshots, "workspaces")


def test_plan_shows_the_four_phases_the_api_plans(
    page: Page, publishd: Served, library: Library, screenshots: Path
) -> None:
    open_draft(page, publishd, library.ws)
    page.locator('details[data-path="books/the-old-man-and-the-sea.json"] summary').click()
    diff = page.locator(
        'details[data-path="books/the-old-man-and-the-sea.json"] tr[data-field="title"]'
    )
    expect(diff.locator(".after")).to_contain_text("(revised edition)")
    expect(diff.locator(".before")).to_have_text('"The Old Man and the Sea"')
    shot(page, screenshots, "draft")

    pipeline_id = plan_in_console(page)

    shown = {
        row.get_attribute("data-phase"): (
            int(row.get_attribute("data-entries") or -1),
            int(row.get_attribute("data-calls") or -1),
        )
        for row in page.locator("#phases tbody tr").all()
    }
    api_plan = publishd.server.call(
        "POST", f"/workspaces/{library.ws}/drafts/{USER}/plans", 201, json={}
    )
    assert list(shown) == ["edit", "create", "delete", "backfill"]
    assert shown == {p["phase"]: (p["entries"], p["calls"]) for p in api_plan["phases"]}
    status = api_counts(publishd, pipeline_id)
    assert {phase: n for phase, (n, _) in shown.items()} == {
        phase: c["total"] for phase, c in status.items()
    }
    expect(page.locator("#estimated-calls")).to_have_text(str(api_plan["estimated_calls"]))
    entry = page.locator('.plan-entry[data-phase="create"][data-path="authors/tolstoy.json"]')
    expect(entry).to_contain_text("deferred: favourite_book")
    edit = page.locator(
        '.plan-entry[data-phase="edit"][data-path="books/the-old-man-and-the-sea.json"]'
    )
    edit.locator("summary").click()
    planned_diff = next(
        e["diff"] for e in api_plan["entries"] if e["path"] == "books/the-old-man-and-the-sea.json"
    )
    for d in planned_diff:
        row = edit.locator(f'tr[data-field="{d["field"]}"]')
        expect(row.locator(".before")).to_have_text(json.dumps(d["before"]))
        expect(row.locator(".after")).to_have_text(json.dumps(d["after"]))
    shot(page, screenshots, "plan")


def test_run_fills_every_bar_with_the_counts_of_the_api(
    page: Page, publishd: Served, library: Library, screenshots: Path
) -> None:
    open_draft(page, publishd, library.ws)
    pipeline_id = plan_in_console(page)

    page.get_by_role("button", name="Run publish").click()

    wait_for_state(page, "completed")
    counts = api_counts(publishd, pipeline_id)
    expect(page.locator("#progress .bar")).to_have_count(len(counts))
    shown = bars(page)
    assert {
        p: {k: b[k] for k in ("total", "published", "failed", "skipped")} for p, b in shown.items()
    } == counts
    assert all(b["done"] == b["total"] for b in shown.values()), shown
    finished = page.locator("#finished li.entry")
    expect(finished).to_have_count(sum(c["total"] for c in counts.values()))
    shot(page, screenshots, "run")


def test_cancel_a_slow_run(page: Page, publishd: Served, library: Library) -> None:
    library.sandbox.faults(latency_ms=1500)
    open_draft(page, publishd, library.ws)
    pipeline_id = plan_in_console(page)
    page.get_by_role("button", name="Run publish").click()
    wait_for_state(page, "running")

    page.get_by_role("button", name="Cancel").click()

    wait_for_state(page, "cancelled")
    status = publishd.server.call("GET", f"/pipelines/{pipeline_id}")
    assert status["state"] == "cancelled"
    published = sum(c["published"] for c in status["counts"].values())
    planned = sum(sum(c.values()) for c in status["counts"].values())
    assert published < planned  # it stopped before the end
    expect(page.get_by_role("button", name="Retry unpublished entries")).to_be_visible()


def test_a_stale_plan_offers_re_plan_then_runs(
    page: Page, publishd: Served, library: Library
) -> None:
    open_draft(page, publishd, library.ws)
    stale_id = plan_in_console(page)
    publishd.server.call(
        "PUT",
        f"/workspaces/{library.ws}/drafts/{USER}/files/authors/austen.json",
        json={"name": "Jane Austen", "slug": "austen"},
    )

    page.get_by_role("button", name="Run publish").click()

    expect(page.locator("#plan-message .error")).to_contain_text("plan again")
    page.get_by_role("button", name="Re-plan").click()
    expect(page.locator(".plan-entry[data-path='authors/austen.json']")).to_be_visible()
    fresh_id = page.url.rsplit("/", 1)[1]
    assert fresh_id != stale_id
    page.get_by_role("button", name="Run publish").click()
    wait_for_state(page, "completed")
    assert publishd.server.call("GET", f"/pipelines/{fresh_id}")["state"] == "completed"
    assert publishd.server.call("GET", f"/pipelines/{stale_id}")["state"] == "stale"


def test_a_failed_entry_shows_its_message_and_retry_publishes_it(
    page: Page, publishd: Served, library: Library
) -> None:
    ghost = "books/ghost.json"
    publishd.server.call(
        "PUT",
        f"/workspaces/{library.ws}/drafts/bob/files/{ghost}",
        json={"title": "Ghost", "slug": "ghost", "author": "a-nobody"},
    )
    open_draft(page, publishd, library.ws, "bob")
    pipeline_id = plan_in_console(page)
    page.get_by_role("button", name="Run publish").click()

    wait_for_state(page, "completed_with_errors")
    problem = page.locator(f'#run-errors .problem[data-path="{ghost}"]')
    expect(problem).to_contain_text("failed")
    error = publishd.server.call("GET", f"/pipelines/{pipeline_id}")["errors"][0]["message"]
    expect(problem.locator(".message")).to_have_text(error)
    # the service is fixed: books' author is no longer a reference it checks
    library.sandbox.define("books", {})

    page.get_by_role("button", name="Retry unpublished entries").click()

    wait_for_state(page, "completed")
    expect(page.locator("#run-errors .problem")).to_have_count(0)
    expect(page.locator(f'#finished li[data-path="{ghost}"]')).to_have_attribute(
        "data-status", "published"
    )
    assert publishd.server.call("GET", f"/pipelines/{pipeline_id}")["state"] == "completed"
    # opened afresh, the stream replays past the first run's end into the retry's
    page.reload()
    wait_for_state(page, "completed")
    expect(page.locator(f'#finished li[data-path="{ghost}"]')).to_have_attribute(
        "data-status", "published"
    )
    expect(page.locator("#run-errors .problem")).to_have_count(0)


def test_the_audit_timeline_lists_every_event_and_the_state_at_each(
    page: Page, publishd: Served, library: Library, screenshots: Path
) -> None:
    planned = publishd.server.call(
        "POST", f"/workspaces/{library.ws}/drafts/{USER}/plans", 201, json={}
    )
    pipeline_id = planned["pipeline_id"]
    publishd.server.call("POST", f"/pipelines/{pipeline_id}/run", params={"wait": "true"})
    events = publishd.server.events(pipeline_id)
    sign_in(page, publishd)

    page.goto(f"{publishd.url}/#/pipelines/{pipeline_id}/audit")

    expect(page.locator("#audit-info")).to_have_text(f"{len(events)} events")
    shown = page.locator("#timeline li.event")
    expect(shown).to_have_count(min(100, len(events)))
    types = [li.get_attribute("data-type") for li in shown.all()]
    assert types == [e["type"] for e in events][:100]
    run_requested = next(i for i, e in enumerate(events) if e["type"] == "PipelineRunRequested")
    page.get_by_role("button", name=f"State after event {run_requested + 1}").click()
    expect(page.locator("#state-at-state")).to_have_text("running")
    page.get_by_role("button", name=f"State after event {len(events)}").click()
    expect(page.locator("#state-at-state")).to_have_text("completed")
    at = publishd.server.call("GET", f"/pipelines/{pipeline_id}/versions/{len(events)}")
    for phase, counts in at["counts"].items():
        row = page.locator(f'#state-at tr[data-phase="{phase}"] td[data-count="published"]')
        expect(row).to_have_text(str(counts["published"]))
    expect(shown.nth(len(events) - 1)).to_have_attribute("aria-current", "true")
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, screenshots, "audit", height=560)


def test_the_pipelines_list_filters_by_state_and_user(
    page: Page, publishd: Served, library: Library, screenshots: Path
) -> None:
    planned = publishd.server.call(
        "POST", f"/workspaces/{library.ws}/drafts/{USER}/plans", 201, json={}
    )
    sign_in(page, publishd)
    page.get_by_role("link", name="Pipelines", exact=True).click()
    page.get_by_label("Workspace").fill(library.ws)
    page.get_by_label("State").select_option("planned")
    page.get_by_label("User").fill(USER)
    page.get_by_label("User").press("Enter")

    rows = page.locator("#pipelines tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-pipeline", planned["pipeline_id"])
    shot(page, screenshots, "pipelines")
    page.get_by_label("State").select_option("completed")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#pipelines")).to_contain_text("No pipeline matches.")


def test_pull_shows_its_progress_and_outcome(
    page: Page, publishd: Served, library: Library
) -> None:
    sign_in(page, publishd)
    page.get_by_role("link", name=library.ws).click()

    page.get_by_role("button", name="Pull from the service").click()

    expect(page.locator("#pull-state")).to_have_attribute("data-state", "completed")
    pulls = publishd.server.call("GET", f"/workspaces/{library.ws}/pulls")["pulls"]
    expect(page.locator('#pull dd[data-count="unchanged"]')).to_have_text(
        str(pulls[0]["unchanged"])
    )


def test_a_stream_cut_server_side_resumes_without_gap_or_duplicate(
    page: Page, publishd: Served, library: Library
) -> None:
    for n in range(EXTRA_AUTHORS):
        publishd.server.call(
            "PUT",
            f"/workspaces/{library.ws}/drafts/{USER}/files/authors/extra-{n:03}.json",
            json={"name": f"Extra {n}", "slug": f"extra-{n:03}"},
        )
    library.sandbox.faults(latency_ms=700)
    open_draft(page, publishd, library.ws)
    pipeline_id = plan_in_console(page)
    started = time.monotonic()
    page.get_by_role("button", name="Run publish").click()
    expect(page.locator("#finished li.entry").first).to_be_visible(timeout=RUN_TIMEOUT)

    publishd.server.restart()  # SIGKILL mid-run: every stream is cut; the next server resumes

    info = page.locator("#stream-info")
    expect(info).to_have_attribute("data-reconnects", re.compile(r"[1-9]\d*"), timeout=RUN_TIMEOUT)
    wait_for_state(page, "completed", timeout=60_000)
    elapsed = time.monotonic() - started
    events = publishd.server.events(pipeline_id)
    expect(info).to_have_attribute("data-last-id", str(len(events)))
    expect(info).to_have_attribute("data-received", str(len(events)))  # each id once, none missed
    status = publishd.server.call("GET", f"/pipelines/{pipeline_id}")
    assert status["state"] == "completed"
    total = sum(sum(c.values()) for c in status["counts"].values())
    assert total > 100  # more than one page of finished entries
    keys = []
    while True:  # the finished entries, a page of 100 at a time
        keys += [
            (li.get_attribute("data-phase"), li.get_attribute("data-path"))
            for li in page.locator("#finished li.entry").all()
        ]
        more = page.locator("#finished").get_by_role("button", name="Next")
        if more.count() == 0 or more.is_disabled():
            break
        more.click()
    assert len(keys) == len(set(keys)) == total
    entries = publishd.server.call("GET", f"/pipelines/{pipeline_id}/entries")["entries"]
    assert set(keys) == {(e["phase"], e["path"]) for e in entries}
    shown = bars(page)
    assert all(b["done"] == b["total"] for b in shown.values()), shown
    # progress is drawn a few times a second at most, however many events arrive
    draws = int(info.get_attribute("data-draws") or 0)
    assert len(events) > 300 and draws <= 4 * elapsed + 4, (draws, elapsed, len(events))


def test_dangling_references_are_listed(page: Page, publishd: Served, library: Library) -> None:
    publishd.server.call(
        "PUT",
        f"/workspaces/{library.ws}/drafts/dora/files/books/orphan.json",
        json={"title": "Orphan", "slug": "orphan", "author": "@/authors/nobody.json"},
    )
    open_draft(page, publishd, library.ws, "dora")

    page.get_by_role("button", name="Plan publish").click()

    expect(page.locator("#plan-result .error")).to_contain_text("dangling_references")
    row = page.locator("#dangling tbody tr")
    expect(row).to_have_count(1)
    expect(row.locator("td")).to_have_text(["books/orphan.json", "author", "authors/nobody.json"])


def test_keyboard_only_on_a_narrow_window(
    page: Page, publishd: Served, library: Library, screenshots: Path
) -> None:
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(publishd.url + "/")
    page.get_by_label("Token").fill(publishd.admin_token)
    page.keyboard.press("Enter")
    link = page.get_by_role("link", name=library.ws)
    link.focus()
    outline = link.evaluate("el => getComputedStyle(el).outlineStyle")
    assert outline != "none"  # focus is visible
    page.keyboard.press("Enter")
    page.locator("#drafts").get_by_role("link", name=USER).focus()
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Plan publish").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#phases")).to_be_visible()
    expect(page.get_by_role("button", name="Run publish")).to_be_focused()

    page.keyboard.press("Enter")

    wait_for_state(page, "completed")
    for width in (390, 1280):
        page.set_viewport_size({"width": width, "height": 800})
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{overflow}px wider than a {width}px window"
    page.set_viewport_size({"width": 390, "height": 800})
    shot(page, screenshots, "run-narrow")
