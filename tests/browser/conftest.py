"""Fixtures of the browser tests: a real headless Chromium, ``publishd serve``, sandboxes.

``browser`` is Debian's Chromium driven by Playwright; ``page`` a fresh
1280x800 context per test; ``publishd`` a real ``publishd serve`` process on its
own PostgreSQL schema (with a sandbox process of its own). Those three live for
this package only: Playwright's sync API keeps an event loop running on the main
thread while it is started, and every later test that calls ``asyncio.run``
would fail, so it is stopped when the browser tests end.
``library`` a fresh sandbox process and workspace per test, loaded with the
demo's four-phase sample draft. Nothing is skipped: without Chromium the
session stops with a message saying how to get it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from infrastructure.postgres.database import Database
from tests.browser.processes import (
    Publishd,
    Sandbox,
    admin_token,
    free_port,
    load_library,
    sandbox_process,
    server_env,
)

LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
expect.set_options(timeout=15_000)
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"


def chromium_executable() -> str:
    found = os.environ.get("PUBLISHD_CHROMIUM") or shutil.which("chromium")
    if not found and Path("/usr/bin/chromium").exists():
        found = "/usr/bin/chromium"
    if not found:
        pytest.exit(
            "the browser tests need Chromium: install Debian's `chromium` (apt-get install "
            "chromium) or point PUBLISHD_CHROMIUM at a Chromium executable",
            returncode=3,
        )
    return found


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=chromium_executable(), args=LAUNCH_ARGS)
    yield launched
    launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, device_scale_factor=1)
    context.set_default_timeout(15_000)
    opened = context.new_page()
    yield opened
    context.close()


@pytest.fixture(scope="session")
def logs() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="publishd-browser-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class Served:
    """What ``publishd`` yields: the server (``url``, ``admin_token``) and its own sandbox."""

    server: Publishd
    sandbox: Sandbox

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def admin_token(self) -> str:
        return self.server.admin_token

    @property
    def sandbox_url(self) -> str:
        return self.sandbox.url


@pytest.fixture(scope="package")
def publishd(database: Database, logs: Path) -> Iterator[Served]:
    schema = f"b_{uuid.uuid4().hex[:12]}"
    env = server_env(database.conninfo, schema)
    server = Publishd(env, free_port(), logs)
    try:
        server.admin_token = admin_token(env)
        server.start()
        with sandbox_process(logs) as sandbox:
            yield Served(server, sandbox)
    finally:
        server.stop()
        with database.connect(autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@dataclass
class Library:
    """A workspace over a sandbox of its own, with alice's four-phase draft."""

    ws: str
    sandbox: Sandbox


@pytest.fixture
def library(publishd: Served, logs: Path) -> Iterator[Library]:
    with sandbox_process(logs) as sandbox:
        yield Library(load_library(publishd.server, sandbox), sandbox)


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
