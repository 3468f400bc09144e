"""Workers: claim runnable pipelines with a lease and run them.

Any number of workers, in any number of processes, may run on one database:
they coordinate only through the pipeline aggregates' leases (optimistic
concurrency), so two workers never run the same pipeline at once and a
pipeline whose worker died is resumed when its lease expires.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import timedelta

from eventsourcing.persistence import IntegrityError

from application.app import PublishdApplication
from application.connector import Connector
from application.runner import Clock, PipelineRun
from domain.errors import DomainError
from domain.pipeline import PublishPipeline
from domain.states import PipelineState
from domain.workspace import Workspace

log = logging.getLogger(__name__)


class Worker:
    def __init__(
        self,
        app: PublishdApplication,
        connector_for: Callable[[Workspace], Connector],
        *,
        clock: Clock,
        lease: timedelta,
        concurrency: int,
        name: str | None = None,
        poll_interval: float = 0.5,
        max_pipelines: int = 8,
    ) -> None:
        self.app = app
        self.connector_for = connector_for
        self.clock = clock
        self.lease = lease
        self.concurrency = concurrency
        self.name = name or f"worker-{uuid.uuid4().hex[:8]}"
        self.poll_interval = poll_interval
        self.max_pipelines = max_pipelines
        self.active: dict[str, asyncio.Task[PipelineState | None]] = {}
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look for work now (a run was just requested in this process)."""
        self._wake.set()

    def claim(self, pipeline_id: str) -> PublishPipeline | None:
        """Take the pipeline's lease if it is free or expired; the claimed pipeline."""
        try:
            pipeline = self.app.pipeline(pipeline_id)
            pipeline.claim(self.name, self.clock(), self.lease)
            self.app.save_all(pipeline)
        except (DomainError, IntegrityError):
            return None
        return pipeline

    async def run_one(self, pipeline_id: str) -> PipelineState | None:
        """Claim and run one pipeline to its end; None if another worker has it."""
        pipeline = await asyncio.to_thread(self.claim, pipeline_id)
        if pipeline is None:
            return None
        run = await asyncio.to_thread(
            PipelineRun,
            self.app,
            pipeline,
            self.name,
            self.connector_for,
            clock=self.clock,
            lease=self.lease,
            concurrency=self.concurrency,
        )
        return await run.execute()

    async def serve(self, stop: asyncio.Event) -> None:
        """Poll for runnable pipelines until ``stop`` is set; then let runs finish their round."""
        while not stop.is_set():
            try:
                await self._dispatch_runnable()
            except Exception:
                log.exception("worker %s could not look for work", self.name)
            self._wake.clear()
            waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            try:
                await asyncio.wait(
                    waiters, timeout=self.poll_interval, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for waiter in waiters:
                    waiter.cancel()
        for task in list(self.active.values()):
            task.cancel()
        await asyncio.gather(*self.active.values(), return_exceptions=True)

    async def _dispatch_runnable(self) -> None:
        for pipeline_id, task in list(self.active.items()):
            if task.done():
                del self.active[pipeline_id]
                if not task.cancelled() and task.exception() is not None:
                    log.error("run of %s crashed", pipeline_id, exc_info=task.exception())
        if len(self.active) >= self.max_pipelines:
            return
        candidates = await asyncio.to_thread(self._runnable, set(self.active))
        for pipeline_id in candidates:
            if len(self.active) >= self.max_pipelines:
                break
            self.active[pipeline_id] = asyncio.create_task(self.run_one(pipeline_id))

    def _runnable(self, running_here: set[str]) -> list[str]:
        """Running pipelines whose lease is free; those this worker runs are not loaded."""
        now = self.clock()
        runnable = []
        for pipeline_id in self.app.views.runnable_pipelines(50):
            if pipeline_id in running_here:
                continue
            pipeline = self.app.load(pipeline_id, PublishPipeline)
            if pipeline is not None and pipeline.runnable(now):
                runnable.append(pipeline_id)
        return runnable
