"""The running service's parts, as the HTTP handlers use them.

Built by ``interfaces.bootstrap``; nothing here connects or starts anything on
import. Runs and pulls are the workers' (any process's): a handler that waits
for one watches its aggregate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from application.app import PublishdApplication
from application.queries import Queries
from application.views import PipelineStatus
from application.webhooks import Webhooks
from application.worker import Worker
from domain.errors import NotFound, RefreshFailed
from domain.json_types import JsonObject
from domain.pull import Pull
from infrastructure.postgres.tokens import Principal
from interfaces.http.auth import may_see

Authenticate = Callable[[Request], Awaitable[Principal]]
Authorize = Callable[[Principal, str, str | None], None]


@dataclass
class Services:
    app: PublishdApplication
    queries: Queries
    authenticate: Authenticate
    authorize: Authorize
    worker: Worker | None = None
    wait_timeout_s: float = 600.0
    webhooks: Webhooks | None = None
    readiness: Callable[[], tuple[bool, JsonObject]] | None = None
    """``/readyz``'s check (blocking): whether the process can do its work, and what it found."""

    @staticmethod
    def of(request: Request) -> Services:
        """The services of the app serving ``request`` (``create_app`` puts them there)."""
        found: Services = request.app.state.services
        return found

    async def guard(self, request: Request, scope: str, workspace: str | None) -> Principal:
        """Authenticate (401), then authorize for ``scope`` in ``workspace`` (403/404)."""
        principal = await self.authenticate(request)
        self.authorize(principal, scope, workspace)
        return principal

    async def guard_pipeline(self, request: Request, scope: str, pipeline_id: str) -> None:
        """Like ``guard``, for the workspace a pipeline belongs to.

        Authenticating first keeps an anonymous caller from learning, by a 404,
        which pipeline ids exist; another workspace's pipeline gets the very
        404 an absent one gets, so a token cannot tell them apart.
        """
        principal = await self.authenticate(request)
        pipeline = await run_in_threadpool(self.app.pipeline, pipeline_id)
        self.authorize(
            principal,
            scope,
            self.visible(principal, "pipeline", pipeline_id, pipeline.workspace_id),
        )

    @staticmethod
    def visible(principal: Principal, kind: str, object_id: str, workspace: str) -> str:
        """``workspace`` when the principal may see it; else the ``kind``'s own not-found."""
        if not may_see(principal, workspace):
            raise NotFound(f"{kind} {object_id} does not exist")
        return workspace

    # --- background work ----------------------------------------------------
    def wake_worker(self) -> None:
        if self.worker is not None:
            self.worker.wake()

    async def _until_terminal(self, is_terminal: Callable[[], bool]) -> None:
        """Poll the aggregate (the worker may be in another process) until it ends or time's up."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_timeout_s
        delay = 0.01
        while not await run_in_threadpool(is_terminal) and loop.time() <= deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)

    async def wait_for_end(self, pipeline_id: str) -> PipelineStatus:
        """Wait until the pipeline reaches a terminal state; return its status."""
        await self._until_terminal(lambda: self.app.pipeline(pipeline_id).is_terminal)
        return await run_in_threadpool(self.queries.pipeline_status, pipeline_id)

    async def refresh(self, workspace_id: str, user: str) -> None:
        """Pull the main records the draft touches, and wait: a plan's ``refresh: true``."""
        started = await run_in_threadpool(self.app.start_refresh, workspace_id, user)
        if started is None:
            return
        self.wake_worker()
        pull = await self.wait_for_pull(started.pull_id)
        if pull.state != "completed":
            raise RefreshFailed(
                f"the refresh pull {pull.pull_id} did not complete ({pull.state}): "
                f"{pull.error or 'it is still running'}",
                {"pull_id": pull.pull_id},
            )

    async def wait_for_pull(self, pull_id: str) -> Pull:
        """Wait until the pull completes or fails (or the deadline passes); the pull then."""
        await self._until_terminal(lambda: self.app.pull(pull_id).is_terminal)
        return await run_in_threadpool(self.app.pull, pull_id)
