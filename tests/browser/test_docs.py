"""``/docs`` in a real Chromium: the API's operations rendered, nothing loaded from elsewhere."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import httpx
from playwright.sync_api import ConsoleMessage, Page, expect

from tests.browser.conftest import Served


def test_docs_renders_every_operation_from_this_server_only(
    page: Page, publishd: Served, screenshots: Path
) -> None:
    requested: list[str] = []
    problems: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":  # a CSP refusal or a failed load is logged as one
            problems.append(f"console: {message.text}")

    page.on("console", console)
    document = httpx.get(f"{publishd.url}/openapi.json", timeout=10).json()
    operations = [op for ops in document["paths"].values() for op in ops.values()]

    with page.expect_response(lambda r: r.url.endswith("/openapi.json")) as fetched:
        page.goto(f"{publishd.url}/docs")
    assert fetched.value.status == 200
    plan = page.locator(".opblock-summary-description", has_text="Plan a publish")
    expect(plan).to_be_visible()
    expect(page.locator(".opblock")).to_have_count(len(operations))
    path = "/workspaces/{ws}/drafts/{user}/plans"
    expect(page.locator(".opblock-summary-path", has_text=path).first).to_be_visible()

    plan.click()  # an operation opens on its parameters and documented answers
    body = page.locator(".opblock.is-open")
    expect(body.locator(".parameters-container")).to_contain_text("user")
    expect(body.locator(".responses-table").first).to_contain_text("422")
    page.screenshot(path=str(screenshots / "docs.png"))

    origin = urlsplit(publishd.url).netloc
    elsewhere = [
        url for url in requested if not url.startswith("data:") and urlsplit(url).netloc != origin
    ]
    assert elsewhere == []
    assert any(url.endswith("/swagger-ui-bundle.js") for url in requested)
    assert problems == []


def test_docs_asks_for_no_token(page: Page, publishd: Served) -> None:
    """Opened cold, as a person would: no sign-in first, and the page still renders."""
    answer = page.goto(f"{publishd.url}/docs")
    assert answer is not None and answer.status == 200
    expect(page.locator(".info .title")).to_contain_text("publishd")
