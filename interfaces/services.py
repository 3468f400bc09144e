"""The running service's parts, as the HTTP and CLI interfaces use them.

Built by ``interfaces.bootstrap``; nothing here connects or starts anything on
import. Background work (workers, projections, pulls) is owned here so that
shutdown can stop it in one place.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from application.app import PublishdApplication
from application.connector import Connector
from application.pull import run_pull
from application.views import Views
from application.worker import Worker
from domain.errors import NotFound
from domain.paths import parse_ref
from domain.pipeline import TERMINAL_STATES
from domain.pull import Pull
from domain.workspace import Workspace
from infrastructure.postgres.tokens import Principal

log = logging.getLogger(__name__)


Authenticate = Callable[[Request], Awaitable[Principal]]
Authorize = Callable[[Principal, str, str | None], None]


@dataclass
class Services:
    app: PublishdApplication
    views: Views
    connector_for: Callable[[Workspace], Connector]
    authenticate: Authenticate
    authorize: Authorize
    worker: Worker | None = None
    wait_timeout_s: float = 600.0
    _pulls: set[asyncio.Task[Pull]] = field(default_factory=set)

    async def guard(self, request: Request, scope: str, workspace: str | None) -> Principal:
        """Authenticate (401), then authorize for ``scope`` in ``workspace`` (403/404)."""
        principal = await self.authenticate(request)
        self.authorize(principal, scope, workspace)
        return principal

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

    async def wait_for_end(self, pipeline_id: str) -> dict[str, Any]:
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
        return await run_in_threadpool(self.pipeline_status, pipeline_id)

    async def aclose(self) -> None:
        for task in list(self._pulls):
            task.cancel()
        await asyncio.gather(*self._pulls, return_exceptions=True)

    # --- queries (read your writes: catch up first) ------------------------------
    def pipeline_status(self, pipeline_id: str) -> dict[str, Any]:
        self.app.catch_up()
        status = self.views.pipeline_status(pipeline_id)
        if status is None:
            raise NotFound(f"pipeline {pipeline_id} does not exist")
        return status

    def list_pipelines(
        self,
        workspace: str | None,
        user: str | None,
        state: str | None,
        limit: int,
        before: str | None,
    ) -> list[dict[str, Any]]:
        self.app.catch_up()
        return self.views.list_pipelines(workspace, user, state, limit, before)

    def pipeline_entries(
        self, pipeline_id: str, phase: str | None, status: str | None
    ) -> list[dict[str, Any]]:
        self.app.catch_up()
        return self.views.pipeline_entries(pipeline_id, phase, status)

    def file_index(
        self, workspace: str, folder: str, record_id: str | None, filename: str | None
    ) -> dict[str, Any]:
        self.app.workspace(workspace)
        self.app.catch_up()
        if record_id is not None:
            row = self.views.file_index_by_record(workspace, folder, record_id)
        else:
            assert filename is not None
            row = self.views.file_index_by_filename(workspace, folder, filename)
        if row is None:
            raise NotFound(f"no FileIndex entry for that record in {folder}")
        return row

    def references(
        self, workspace: str, target: str | None, folder: str | None, record_id: str | None
    ) -> list[dict[str, Any]]:
        self.app.workspace(workspace)
        self.app.catch_up()
        if target is not None:
            file_path = parse_ref(target)
            return self.views.references(workspace, file_path.folder, file_path.filename, None)
        assert folder is not None
        return self.views.references(workspace, folder, None, record_id)

    def pipeline_terminal(self, state: str) -> bool:
        return state in TERMINAL_STATES
