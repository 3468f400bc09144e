"""Workers: claim runnable pipelines and pulls with a lease and run them.

Any number of workers, in any number of processes, may run on one database:
they coordinate only through the aggregates' leases (optimistic concurrency),
so two workers never run the same pipeline or pull at once, and one whose
worker died is resumed when its lease expires.

Fairness: each poll looks at one window of ``window`` running pipelines (and
pulls), oldest first, starting where the last poll stopped and wrapping around
at the end; a poll that fills its free slots stops at the last one it took.
However many are held by other workers' live leases, a runnable one is reached
within ``ceil(running / window) + 1`` polls that find nothing to take, so none
waits behind the others forever.

While the database is away the polls fail; the worker waits longer between
them (doubling, up to ``max_backoff``) and resumes by itself when it answers.
A run of this worker that crashed on the outage still holds its lease: the
worker takes it up again at once, instead of waiting for the lease to expire.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from eventsourcing.persistence import IntegrityError

from application import log_context
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
        window: int = 50,
        max_backoff: float = 5.0,
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
        self.window = window
        self.max_backoff = max_backoff
        self._after: str | None = None
        """The last pipeline the previous poll looked at (None: start from the oldest)."""
        self._after_pull: str | None = None
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
        """Claim and run one pipeline to its end; None if another worker has it.

        Runs in a task of its own, so the ids bound here are on every log line
        of the run, with the trace of the request that planned it.
        """
        pipeline = await asyncio.to_thread(self.claim, pipeline_id)
        if pipeline is None:
            return None
        log_context.pipeline_id.set(pipeline_id)
        log_context.workspace.set(pipeline.workspace_id)
        log_context.trace_id.set(pipeline.trace_id)
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
        log_context.pull_id.set(pull_id)
        log_context.workspace.set(pull.workspace_id)
        workspace = await asyncio.to_thread(self.app.workspace, pull.workspace_id)
        connector = self.connector_for(workspace)
        run = await asyncio.to_thread(
            PullRun, self.app, pull, self.name, connector, clock=self.clock, lease=self.lease
        )
        return await run.execute()

    async def serve(self, stop: asyncio.Event) -> None:
        """Poll for runnable pipelines until ``stop`` is set; then let runs finish their round."""
        pause = self.poll_interval
        while not stop.is_set():
            try:
                await self._dispatch_runnable()
            except Exception:
                if pause == self.poll_interval:  # once per outage, not at every retry
                    log.exception("worker %s could not look for work; retrying", self.name)
                pause = min(pause * 2, self.max_backoff)
            else:
                if pause != self.poll_interval:
                    log.warning("worker %s looks for work again", self.name)
                pause = self.poll_interval
            self._wake.clear()
            waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            try:
                await asyncio.wait(waiters, timeout=pause, return_when=asyncio.FIRST_COMPLETED)
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
        free = self.max_pipelines - len(self.active)
        if free > 0:
            candidates = await asyncio.to_thread(self._runnable, set(self.active), free)
            for pipeline_id in candidates:
                self.active[pipeline_id] = asyncio.create_task(self.run_one(pipeline_id))
        free = self.max_pulls - len(self.pulls)
        if free > 0:
            pulls = await asyncio.to_thread(self._runnable_pulls, set(self.pulls), free)
            for pull_id in pulls:
                self.pulls[pull_id] = asyncio.create_task(self.run_pull(pull_id))

    def _runnable(self, running_here: set[str], wanted: int) -> list[str]:
        """Up to ``wanted`` claimable pipelines from the next window (this worker's own skipped)."""
        now = self.clock()

        def claimable(pipeline_id: str) -> bool:
            pipeline = self.app.load(pipeline_id, PublishPipeline)
            return pipeline is not None and (
                pipeline.runnable(now)
                or (pipeline.state == PipelineState.RUNNING and pipeline.lease_owner == self.name)
            )

        page = self.app.views.runnable_pipelines(self.window, after=self._after)
        found, self._after = self._window(page, running_here, wanted, claimable)
        return found

    def _runnable_pulls(self, running_here: set[str], wanted: int) -> list[str]:
        """Up to ``wanted`` claimable pulls from the next window (this worker's own skipped)."""
        now = self.clock()

        def claimable(pull_id: str) -> bool:
            pull = self.app.load(pull_id, Pull)
            return pull is not None and (
                pull.runnable(now) or (pull.state == "running" and pull.lease_owner == self.name)
            )

        page = self.app.views.runnable_pulls(self.window, after=self._after_pull)
        found, self._after_pull = self._window(page, running_here, wanted, claimable)
        return found

    def _window(
        self,
        page: list[str],
        running_here: set[str],
        wanted: int,
        claimable: Callable[[str], bool],
    ) -> tuple[list[str], str | None]:
        """The claimable ids of one window, and where the next window starts.

        Claimable means free, or leased by this worker although none of its
        runs has it (the run crashed, on a database outage say): nobody else
        may take it until the lease expires, and this worker need not wait.
        Once ``wanted`` are found the next window starts right after the last
        one taken; a short page is the end of the list, so the next window
        starts from the oldest again.
        """
        found: list[str] = []
        for key in page:
            if key in running_here or not claimable(key):
                continue
            found.append(key)
            if len(found) == wanted:
                return found, key
        return found, (page[-1] if len(page) == self.window else None)


def _forget_ended(tasks: dict[str, asyncio.Task[R]], what: str) -> None:
    for key, task in list(tasks.items()):
        if task.done():
            del tasks[key]
            if not task.cancelled() and task.exception() is not None:
                log.error("%s of %s crashed", what, key, exc_info=task.exception())
