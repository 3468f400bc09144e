"""Fixtures of the HTTP command tests: see ``tests/api/api_support.py``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infrastructure.postgres.database import Database
from tests.api.api_support import Publishd, Sandbox, library, serve_publishd, serve_sandbox


@pytest.fixture(scope="session")
def api(database: Database) -> Iterator[Publishd]:
    """One live publishd for the session; give each test its own workspace id."""
    with serve_publishd(database) as served:
        yield served


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A fresh sandbox CMS for one test (its collections are global to it)."""
    with serve_sandbox() as served:
        yield served


@pytest.fixture
def ws(api: Publishd, sandbox: Sandbox) -> str:
    """A fresh workspace over the sandbox's library, pulled to main."""
    return library(api, sandbox)


@pytest.fixture
def gate_closed(sandbox: Sandbox) -> Iterator[Sandbox]:
    """The sandbox with its item writes held: a run stays ``running`` until the gate opens."""
    sandbox.gate.close()
    try:
        yield sandbox
    finally:
        sandbox.gate.open()
