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

from infrastructure.postgres.availability import Availability, guarded_pool
from infrastructure.postgres.database import lock_for_ddl

SCOPES = frozenset({"read", "write", "publish"})
"""What a workspace's token may hold; ``admin`` is a kind of token, not a scope of one."""
IMPLIED = {"publish": frozenset({"read"})}
"""A token that may publish may see what it publishes (README "Scopes")."""
TOKEN_PREFIX = "pd_"
TICKET_PREFIX = "pdt_"


@dataclass(frozen=True)
class Principal:
    """Who is asking: a workspace's token with scopes, or an admin who sees everything."""

    workspace: str | None
    scopes: frozenset[str]
    admin: bool = False

    def grants(self, scope: str) -> bool:
        """Whether the token holds ``scope`` itself or through a scope that implies it."""
        return scope in self.scopes or any(scope in IMPLIED.get(s, ()) for s in self.scopes)


@dataclass(frozen=True)
class TokenRow:
    """A token as ``tokens list`` shows it: never its secret, nor its hash."""

    id: int
    workspace: str | None
    scopes: list[str]
    admin: bool
    created_at: datetime
    revoked: bool


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_scopes(scopes: frozenset[str]) -> None:
    """Raise ``ValueError`` unless ``scopes`` is a workspace token's: known, and some."""
    if "admin" in scopes:
        raise ValueError("admin is not a scope: an admin token is made with --admin")
    unknown = scopes - SCOPES
    if unknown:
        raise ValueError(f"unknown scopes: {', '.join(sorted(unknown))}")
    if not scopes:
        raise ValueError("a workspace token needs at least one scope")


class TokenStore:
    def __init__(
        self,
        conninfo: str,
        schema: str = "public",
        *,
        pool_size: int = 4,
        availability: Availability | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._pool: ConnectionPool[Any] = guarded_pool(
            conninfo, availability, max_size=pool_size, timeout=timeout, open=False
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
        """A new token; the only time its secret exists outside the caller's hands.

        Refuses what used to be granted by surprise: ``admin`` among a
        workspace token's scopes made a global admin, and a token without a
        scope can do nothing. (Whether ``workspace`` exists is the caller's
        check: this store knows no workspaces.)
        """
        wanted = frozenset(scopes)
        if admin:
            if workspace is not None:
                raise ValueError("an admin token is global: give no workspace with it")
        else:
            if workspace is None:
                raise ValueError("a token needs a workspace unless it is an admin token")
            check_scopes(wanted)
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._pool.connection() as conn:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (hash, workspace, scopes, admin) VALUES (%s, %s, %s, %s)"
                ).format(self._tokens),
                (token_hash(secret), workspace, sorted(wanted), admin),
            )
        return secret

    def list_tokens(self) -> list[TokenRow]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                sql.SQL(
                    "SELECT id, workspace, scopes, admin, created_at, revoked FROM {} ORDER BY id"
                ).format(self._tokens)
            ).fetchall()
        return [TokenRow(r[0], r[1], list(r[2]), bool(r[3]), r[4], bool(r[5])) for r in rows]

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
        return self._revoke("hash = %s", token_hash(secret))

    def revoke_id(self, token_id: int) -> bool:
        """Revoke by the id ``tokens list`` shows (the secret is nowhere to be found again)."""
        return self._revoke("id = %s", token_id)

    def _revoke(self, where: str, key: object) -> bool:
        with self._pool.connection() as conn:
            cursor = conn.execute(
                sql.SQL("UPDATE {} SET revoked = true WHERE " + where + " AND NOT revoked").format(
                    self._tokens
                ),
                (key,),
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
