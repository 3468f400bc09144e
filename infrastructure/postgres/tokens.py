"""API tokens and stream tickets, stored only as SHA-256 hashes.

A token is 32 random bytes, so a plain SHA-256 (no salt, no slow KDF) is enough:
nobody can guess a preimage, and the hash is a unique key to look it up by. A
stolen table gives no usable token.

Stream tickets exist because browsers' EventSource cannot send headers: a
client trades its token for a ticket that is good for ``ttl`` seconds and one
use, carries the token's grant, and may travel in a URL. Redeeming deletes the
row in the same statement that checks it, so two racing requests cannot both
win.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import sql
from psycopg_pool import ConnectionPool

from infrastructure.postgres.database import lock_for_ddl

SCOPES = frozenset({"read", "write", "publish", "admin"})
TOKEN_PREFIX = "pd_"
TICKET_PREFIX = "pdt_"


@dataclass(frozen=True)
class Principal:
    """Who is asking: a workspace's token with scopes, or an admin who sees everything."""

    workspace: str | None
    scopes: frozenset[str]
    admin: bool = False


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenStore:
    def __init__(self, conninfo: str, schema: str = "public", *, pool_size: int = 4) -> None:
        self._pool: ConnectionPool[Any] = ConnectionPool(
            conninfo, min_size=1, max_size=pool_size, kwargs={"autocommit": True}, open=False
        )
        self._tokens = sql.Identifier(schema, "api_tokens")
        self._tickets = sql.Identifier(schema, "stream_tickets")

    def open(self) -> None:
        self._pool.open(wait=True)

    def close(self) -> None:
        self._pool.close()

    def create_tables(self) -> None:
        with self._pool.connection() as conn, conn.transaction():
            lock_for_ddl(conn)
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " id bigserial PRIMARY KEY,"
                    " hash text NOT NULL UNIQUE,"
                    " workspace text,"
                    " scopes text[] NOT NULL,"
                    " admin boolean NOT NULL DEFAULT false,"
                    " created_at timestamptz NOT NULL DEFAULT now(),"
                    " revoked boolean NOT NULL DEFAULT false)"
                ).format(self._tokens)
            )
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " hash text PRIMARY KEY,"
                    " workspace text,"
                    " scopes text[] NOT NULL,"
                    " admin boolean NOT NULL DEFAULT false,"
                    " expires_at timestamptz NOT NULL)"
                ).format(self._tickets)
            )

    def create_token(
        self, workspace: str | None, scopes: list[str] | frozenset[str], admin: bool = False
    ) -> str:
        """A new token; the only time its secret exists outside the caller's hands."""
        wanted = frozenset(scopes)
        unknown = wanted - SCOPES
        if unknown:
            raise ValueError(f"unknown scopes: {', '.join(sorted(unknown))}")
        admin = admin or "admin" in wanted
        if workspace is None and not admin:
            raise ValueError("a token needs a workspace unless it is an admin token")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._pool.connection() as conn:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (hash, workspace, scopes, admin) VALUES (%s, %s, %s, %s)"
                ).format(self._tokens),
                (token_hash(secret), workspace, sorted(wanted), admin),
            )
        return secret

    def lookup(self, secret: str) -> Principal | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                sql.SQL(
                    "SELECT workspace, scopes, admin FROM {} WHERE hash = %s AND NOT revoked"
                ).format(self._tokens),
                (token_hash(secret),),
            ).fetchone()
        return None if row is None else Principal(row[0], frozenset(row[1]), bool(row[2]))

    def revoke(self, secret: str) -> bool:
        with self._pool.connection() as conn:
            cursor = conn.execute(
                sql.SQL("UPDATE {} SET revoked = true WHERE hash = %s").format(self._tokens),
                (token_hash(secret),),
            )
            return bool(cursor.rowcount > 0)

    def create_ticket(self, principal: Principal, ttl_seconds: float) -> tuple[str, datetime]:
        secret = TICKET_PREFIX + secrets.token_urlsafe(32)
        with self._pool.connection() as conn:
            conn.execute(sql.SQL("DELETE FROM {} WHERE expires_at < now()").format(self._tickets))
            row = conn.execute(
                sql.SQL(
                    "INSERT INTO {} (hash, workspace, scopes, admin, expires_at) "
                    "VALUES (%s, %s, %s, %s, now() + make_interval(secs => %s)) "
                    "RETURNING expires_at"
                ).format(self._tickets),
                (
                    token_hash(secret),
                    principal.workspace,
                    sorted(principal.scopes),
                    principal.admin,
                    ttl_seconds,
                ),
            ).fetchone()
        assert row is not None
        expires_at: datetime = row[0]
        return secret, expires_at

    def redeem_ticket(self, secret: str) -> Principal | None:
        """The ticket's grant, once: the row is gone after the first redemption."""
        with self._pool.connection() as conn:
            row = conn.execute(
                sql.SQL(
                    "DELETE FROM {} WHERE hash = %s RETURNING workspace, scopes, admin, "
                    "expires_at > clock_timestamp()"
                ).format(self._tickets),
                (token_hash(secret),),
            ).fetchone()
        if row is None or not row[3]:
            return None
        return Principal(row[0], frozenset(row[1]), bool(row[2]))
