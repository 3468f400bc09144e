"""The running service's parts, as the HTTP handlers use them.

Built by ``interfaces.bootstrap``; nothing here connects or starts anything on
import. Pulls started in the background are owned here so that shutdown can
cancel them in one place.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from application.app import PublishdApplication
from application.connector import Connector
from application.pull import run_pull
from application.queries import Queries
from application.views import PipelineStatus
from application.worker import Worker
from domain.pull import Pull
from domain.workspace import Workspace
from infrastructure.postgres.tokens import Principal

log = logging.getLogger(__name__)


Authenticate = Callable[[Request], Awaitable[Principal]]
Authorize = Callable[[Principal, str, str | None], None]


@dataclass
class Services:
    app: PublishdApplication
    queries: Queries
    connector_for: Callable[[Workspace], Connector]
    authenticate: Authenticate
    authorize: Authorize
    worker: Worker | None = None
    wait_timeout_s: float = 600.0
    _pulls: set[asyncio.Task[Pull]] = field(default_factory=set)

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
        which pipeline ids exist.
        """
        principal = await self.authenticate(request)
        pipeline = await run_in_threadpool(self.app.pipeline, pipeline_id)
        self.authorize(principal, scope, pipeline.workspace_id)

    # --- background work ----------------------------------------------------
    def wake_worker(self) -> None:
        if self.worker is not None:
            self.worker.wake()

    def start_background_pull(self, pull_id: str) -> None:
        task = asyncio.create_task(self.pull_now(pull_id))
        self._pulls.add(task)
        task.add_done_callback(self._pulls.discard)

    async def pull_now(self, pull_id: str) -> Pull:
        pull = await run_in_threadpool(self.app.pull, pull_id)
        workspace = await run_in_threadpool(self.app.workspace, pull.workspace_id)
        try:
            return await run_pull(self.app, pull_id, self.connector_for(workspace))
        except Exception:
            log.exception("pull %s failed", pull_id)
            return await run_in_threadpool(self.app.pull, pull_id)

    async def wait_for_end(self, pipeline_id: str) -> PipelineStatus:
        """Wait until the pipeline reaches a terminal state; return its status."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_timeout_s
        delay = 0.01
        while True:
            pipeline = await run_in_threadpool(self.app.pipeline, pipeline_id)
            if pipeline.is_terminal or loop.time() > deadline:
                break
            await asyncio.sleep(delay)  # polling the aggregate: the worker may be elsewhere
            delay = min(delay * 2, 0.2)
        return await run_in_threadpool(self.queries.pipeline_status, pipeline_id)

    async def aclose(self) -> None:
        for task in list(self._pulls):
            task.cancel()
        await asyncio.gather(*self._pulls, return_exceptions=True)
