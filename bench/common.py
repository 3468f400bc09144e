"""What every benchmark script needs: the server, a throwaway schema, a RESULT line.

Benchmarks run against ``PUBLISHD_DATABASE_URL`` only: an embedded server
started for one run would measure its own cold start, not the design.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from infrastructure.postgres.database import Database, from_url


def database_from_env() -> Database:
    url = os.environ.get("PUBLISHD_DATABASE_URL")
    if not url:
        sys.exit("set PUBLISHD_DATABASE_URL to the PostgreSQL server to measure")
    return from_url(url)


@contextmanager
def temporary_schema(database: Database, prefix: str = "bench") -> Iterator[str]:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with database.connect(autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield name
    finally:
        with database.connect(autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def median(values: list[float]) -> float:
    return statistics.median(values)


def print_result(**figures: Any) -> None:
    """The last line of every bench: one machine-readable JSON object."""
    print("RESULT " + json.dumps(figures))
