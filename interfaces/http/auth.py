"""Who is asking, and may they: bearer tokens, stream tickets, scopes and tenancy.

Token lookups are cached in-process for ``cache_seconds`` (default 5 s) so a
burst of requests, or a thousand stream clients reconnecting at once, costs one
query. The price: **a revoked token keeps working in a process for up to that
TTL.** Unknown tokens are cached too; that is safe because a new token is
random and can never equal a string that was already refused.

Tenancy: a token for one workspace sees nothing of another, so a foreign
workspace's object is ``404 not_found``, not ``403`` (which would confirm that
it exists). Inside its own workspace a missing scope is ``403 forbidden``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from infrastructure.postgres.tokens import Principal, TokenStore
from interfaces.http import models as m
from interfaces.http.errors import ApiError
from interfaces.http.registry import documented

__all__ = ["Authenticator", "Principal", "auth_routes", "require_scope"]


class Authenticator:
    def __init__(
        self,
        tokens: TokenStore,
        *,
        cache_seconds: float = 5.0,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tokens = tokens
        self._cache_seconds = cache_seconds
        self._cache_size = cache_size
        self._clock = clock
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def authenticate(self, request: Request, *, allow_ticket: bool = False) -> Principal:
        """The principal behind ``Authorization: Bearer``, or a ``?ticket=`` on streams."""
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, secret = header.partition(" ")
            secret = secret.strip()
            if scheme.lower() != "bearer" or not secret:
                raise ApiError("unauthorized", "the Authorization header must be 'Bearer <token>'")
            principal = await self._token(secret)
            if principal is None:
                raise ApiError("unauthorized", "the token is unknown or revoked")
            return principal
        ticket = request.query_params.get("ticket") if allow_ticket else None
        if ticket:
            principal = await anyio.to_thread.run_sync(self.tokens.redeem_ticket, ticket)
            if principal is None:
                raise ApiError("unauthorized", "the ticket is unknown, used or expired")
            return principal
        raise ApiError("unauthorized", "a bearer token is required")

    async def _token(self, secret: str) -> Principal | None:
        now = self._clock()
        cached = self._cache.get(secret)
        if cached is not None and cached[0] > now:
            return cached[1]
        principal = await anyio.to_thread.run_sync(self.tokens.lookup, secret)
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[secret] = (now + self._cache_seconds, principal)
        return principal


def require_scope(principal: Principal, scope: str, workspace: str | None) -> None:
    """Allow, or raise: 404 for another workspace's object, 403 for a missing scope.

    ``workspace=None`` names something outside every workspace (the global
    stream, the workspace list): only an admin may touch it.
    """
    if principal.admin:
        return
    if workspace is None:
        raise ApiError("forbidden", "this needs an admin token")
    if principal.workspace != workspace:
        raise ApiError("not_found", f"workspace {workspace} not found")
    if scope not in principal.scopes:
        raise ApiError("forbidden", f"this token lacks the {scope!r} scope")


def auth_routes(authenticator: Authenticator, *, ticket_seconds: float = 60.0) -> list[Route]:
    async def create_ticket(request: Request) -> Response:
        principal = await authenticator.authenticate(request)
        ticket, expires_at = await anyio.to_thread.run_sync(
            authenticator.tokens.create_ticket, principal, ticket_seconds
        )
        return JSONResponse(
            {"ticket": ticket, "expires_at": expires_at.isoformat()}, status_code=201
        )

    return [Route("/stream-tickets", create_ticket, methods=["POST"])]


DOCUMENTED = [
    documented(
        "POST",
        "/stream-tickets",
        "A short-lived single-use ticket for ?ticket= on streams",
        "create_stream_ticket",
        responses={201: m.StreamTicket},
    ),
]
"""The OpenAPI entry of ``auth_routes``."""
