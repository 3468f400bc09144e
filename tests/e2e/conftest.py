"""Fixtures of the end-to-end tests that run ``publishd serve`` in its own process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infrastructure.postgres.database import Database
from infrastructure.settings import Settings
from interfaces.bootstrap import Runtime


@pytest.fixture
def runtime(database: Database, schema: str) -> Iterator[Runtime]:
    """This test's side of the server's database: workspace ``acme`` with folder ``books``."""
    runtime = Runtime.build(Settings(database_url=database.conninfo, db_schema=schema))
    runtime.app.create_workspace("acme", {"type": "sandbox", "base_url": "http://127.0.0.1:9/"})
    runtime.app.register_schema("acme", "books", {})
    yield runtime
    runtime.close()
