"""Workers: claim runnable pipelines and pulls with a lease and run them.

Any number of workers, in any number of processes, may run on one database:
they coordinate only through the aggregates' leases (optimistic concurrency),
so two workers never run the same pipeline or pull at once, and one whose
worker died is resumed when its lease expires.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from eventsourcing.persistence import IntegrityError

from application.app import PublishdApplication
from application.connector import Connector
from application.pull import PullRun
from application.runner import Clock, PipelineRun
from domain.errors import DomainError
from domain.pipeline import PublishPipeline
from domain.pull import Pull
from domain.states import PipelineState
from domain.workspace import Workspace

log = logging.getLogger(__name__)
R = TypeVar("R")


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
        max_pulls: int = 4,
    ) -> None:
        self.app = app
        self.connector_for = connector_for
        self.clock = clock
        self.lease = lease
        self.concurrency = concurrency
        self.name = name or f"worker-{uuid.uuid4().hex[:8]}"
        self.poll_interval = poll_interval
        self.max_pipelines = max_pipelines
        self.max_pulls = max_pulls
        self.active: dict[str, asyncio.Task[PipelineState | None]] = {}
        self.pulls: dict[str, asyncio.Task[Pull | None]] = {}
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

    def claim_pull(self, pull_id: str) -> Pull | None:
        """Take the pull's lease if it is free or expired; the claimed pull."""
        try:
            pull = self.app.pull(pull_id)
            pull.claim(self.name, self.clock(), self.lease)
            self.app.save_all(pull)
        except (DomainError, IntegrityError):
            return None
        return pull

    async def run_pull(self, pull_id: str) -> Pull | None:
        """Claim and run one pull to its end; None if another worker has it (or took it over)."""
        pull = await asyncio.to_thread(self.claim_pull, pull_id)
        if pull is None:
            return None
        workspace = await asyncio.to_thread(self.app.workspace, pull.workspace_id)
        connector = self.connector_for(workspace)
        run = await asyncio.to_thread(
            PullRun, self.app, pull, self.name, connector, clock=self.clock, lease=self.lease
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
        tasks = [*self.active.values(), *self.pulls.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _dispatch_runnable(self) -> None:
        _forget_ended(self.active, "run")
        _forget_ended(self.pulls, "pull")
        if len(self.active) < self.max_pipelines:
            candidates = await asyncio.to_thread(self._runnable, set(self.active))
            for pipeline_id in candidates[: self.max_pipelines - len(self.active)]:
                self.active[pipeline_id] = asyncio.create_task(self.run_one(pipeline_id))
        if len(self.pulls) < self.max_pulls:
            pulls = await asyncio.to_thread(self._runnable_pulls, set(self.pulls))
            for pull_id in pulls[: self.max_pulls - len(self.pulls)]:
                self.pulls[pull_id] = asyncio.create_task(self.run_pull(pull_id))

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

    def _runnable_pulls(self, running_here: set[str]) -> list[str]:
        """Running pulls whose lease is free; those this worker runs are not loaded."""
        now = self.clock()
        runnable = []
        for pull_id in self.app.views.runnable_pulls(50):
            if pull_id in running_here:
                continue
            pull = self.app.load(pull_id, Pull)
            if pull is not None and pull.runnable(now):
                runnable.append(pull_id)
        return runnable


def _forget_ended(tasks: dict[str, asyncio.Task[R]], what: str) -> None:
    for key, task in list(tasks.items()):
        if task.done():
            del tasks[key]
            if not task.cancelled() and task.exception() is not None:
                log.error("%s of %s crashed", what, key, exc_info=task.exception())
