"""Shared fixtures: a real PostgreSQL for every test that needs one.

``PUBLISHD_DATABASE_URL`` picks a server; without it the tests start an
embedded PostgreSQL (pgserver) once per session in a temporary directory.
Each test that asks for ``schema`` gets a fresh PostgreSQL schema, dropped
afterwards, so tests never see each other's tables.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from infrastructure.postgres.database import Database, resolve


@pytest.fixture(scope="session")
def database(tmp_path_factory: pytest.TempPathFactory) -> Database:
    url = os.environ.get("PUBLISHD_DATABASE_URL")
    data_dir = tmp_path_factory.mktemp("publishd-data")
    return resolve(url, data_dir)


@pytest.fixture
def schema(database: Database) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with database.connect(autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    yield name
    with database.connect(autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{name}" CASCADE')
