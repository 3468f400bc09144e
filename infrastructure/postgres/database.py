"""Which PostgreSQL to use: ``PUBLISHD_DATABASE_URL``, or an embedded server.

The embedded server (pgserver, a pip-installed PostgreSQL) keeps its data in
``PUBLISHD_DATA_DIR/pg`` and is shared by every publishd process on that
directory: pgserver reference-counts the processes using it and stops the
server when the last one exits.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import psycopg


@dataclass(frozen=True)
class Database:
    """Connection facts for one server, in the two forms our libraries want."""

    conninfo: str
    dbname: str
    host: str
    port: str
    user: str
    password: str

    def eventsourcing_env(self, schema: str, pool_size: int = 8) -> dict[str, str]:
        return {
            "PERSISTENCE_MODULE": "infrastructure.postgres.factory:PublishdPostgresFactory",
            "POSTGRES_DBNAME": self.dbname,
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": self.port,
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": self.password,
            "POSTGRES_SCHEMA": schema,
            "POSTGRES_POOL_SIZE": str(pool_size),
            "POSTGRES_MAX_OVERFLOW": str(pool_size),
            "POSTGRES_LOCK_TIMEOUT": "30",
            "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "60",
            "CREATE_TABLE": "y",
        }

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(self.conninfo, **kwargs)


DDL_LOCK_KEY = 0x7075_626C_6464  # "publdd": one key for every publishd CREATE


def lock_for_ddl(conn: psycopg.Connection[Any]) -> None:
    """Serialise schema creation across processes, until the transaction ends.

    Concurrent ``CREATE ... IF NOT EXISTS`` / ``CREATE OR REPLACE`` of the same
    objects race in PostgreSQL ("tuple concurrently updated", duplicate type
    names), so processes starting together would crash on start.
    """
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK_KEY,))


def from_url(url: str) -> Database:
    parsed = urlparse(url)
    if parsed.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"PUBLISHD_DATABASE_URL must be a postgresql:// URL, got {url!r}")
    query = dict(p.split("=", 1) for p in parsed.query.split("&") if "=" in p)
    host = unquote(parsed.hostname or query.get("host", "") or "localhost")
    return Database(
        conninfo=url,
        dbname=unquote(parsed.path.lstrip("/")) or "postgres",
        host=host,
        port=str(parsed.port or query.get("port", "5432")),
        user=unquote(parsed.username or query.get("user", "") or "postgres"),
        password=unquote(parsed.password or ""),
    )


def embedded(data_dir: Path) -> Database:
    """Start (or join) the embedded PostgreSQL in ``data_dir/pg``."""
    # imported here: starting a server is never an import side effect
    with warnings.catch_warnings():
        # pgserver asks platformdirs for a runtime directory when imported;
        # without XDG_RUNTIME_DIR (containers, CI) that warns and falls back to
        # /tmp/runtime-UID, which serves: the warning is noise before the URL.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        from pgserver.postgres_server import get_server

    pgdata = (data_dir / "pg").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(pgdata, cleanup_mode="stop")
    uri = server.get_uri()
    database = from_url(uri)
    _keep_alive.append(server)
    return database


_keep_alive: list[Any] = []


def stop_embedded() -> None:
    """Stop the embedded servers this process started (they also stop at exit)."""
    while _keep_alive:
        _keep_alive.pop().cleanup()


def resolve(database_url: str | None, data_dir: Path) -> Database:
    return from_url(database_url) if database_url else embedded(data_dir)
