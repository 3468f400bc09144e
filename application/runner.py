"""The run engine: executes one pipeline's phases against the connector.

One ``PipelineRun`` owns the pipeline and workspace aggregates for the length
of a run and is their only writer in this process. It works in *rounds*: each
round records, in ONE transaction, the outcomes that came back since the last
round, the skips it decided, and the intents of the calls it is about to send
(group commit), and only then sends those calls. So an outcome is never lost
(it is saved before the round that depends on it), an intent always precedes
its call, and the database sees one transaction per round, not per entry.
Calls go on while a round saves (see ``_run_phase``), so saving costs no
concurrency.

Every write goes through optimistic concurrency. A rejected save means another
writer moved an aggregate: the run reloads, and goes on only if it still holds
the lease (a cancel request is such a move); otherwise it stops recording at
once — the fence that keeps a worker that slept through its lease from writing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from eventsourcing.persistence import IntegrityError

from application.app import PublishdApplication
from application.calls import Outcome, RecordIds, judge, send
from application.connector import Connector, ConnectorError
from domain.calls import Call
from domain.errors import LeaseLost
from domain.json_types import JsonObject
from domain.pipeline import PublishPipeline
from domain.plan import EntryKey, Phase, UpstreamPolicy
from domain.schema import FolderSchema
from domain.states import PipelineState
from domain.workspace import Workspace

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
MAX_SAVE_ATTEMPTS = 8
WINDOWS_AHEAD = 2
"""Intents saved ahead of the calls, in windows of ``concurrency`` calls: while one
round saves, a full window of saved intents waits to start as calls finish, so a
fast service never idles on the database (double buffering). The price: after a
cancel, up to this many windows of already-recorded calls still go out."""


@dataclass
class _Round:
    outcomes: list[Outcome] = field(default_factory=list)
    skips: list[tuple[EntryKey, str]] = field(default_factory=list)
    intents: list[Call] = field(default_factory=list)


class RunStopped(Exception):
    """The run lost its lease: nothing more may be recorded."""


class PipelineRun:
    def __init__(
        self,
        app: PublishdApplication,
        pipeline: PublishPipeline,
        worker: str,
        connector_for: Callable[[Workspace], Connector],
        *,
        clock: Clock,
        lease: timedelta,
        concurrency: int,
    ) -> None:
        """``pipeline``: as this worker just claimed (and saved) it."""
        self.app = app
        self.pipeline_id = pipeline.pipeline_id
        self.worker = worker
        self.connector_for = connector_for
        self.clock = clock
        self.lease = lease
        self.concurrency = concurrency
        self.pipeline: PublishPipeline = pipeline
        self.workspace: Workspace = app.workspace(self.pipeline.workspace_id)
        self.schemas: dict[str, FolderSchema] = self.workspace.folder_schemas()
        self.record_ids = RecordIds(self.pipeline.created_record_ids())
        self.fatal: str | None = None
        self._planned_changes: dict[str, JsonObject | None] | None = None

    # --- saving -------------------------------------------------------------
    def _reload(self) -> None:
        self.pipeline = self.app.pipeline(self.pipeline_id)
        self.workspace = self.app.workspace(self.pipeline.workspace_id)
        if self.pipeline.lease_owner != self.worker:
            raise RunStopped(f"{self.worker} lost the lease of {self.pipeline_id}")
        self.record_ids.created = self.pipeline.created_record_ids()

    def _save(self, mutate: Callable[[], None], *, with_draft: bool = False) -> None:
        """Apply ``mutate`` to the current aggregates and save; on conflict reload and redo."""
        for _ in range(MAX_SAVE_ATTEMPTS):
            try:
                self._renew_if_due()
                mutate()
                draft = None
                if with_draft:
                    draft = self.app.draft(self.pipeline.workspace_id, self.pipeline.user)
                    if draft is not None:
                        draft.rebase(
                            self.pipeline_id, self.pipeline.published_paths(), self._planned()
                        )
                self.app.save_all(self.pipeline, self.workspace, draft)
                return
            except IntegrityError:
                self._reload()
            except LeaseLost as exc:
                raise RunStopped(str(exc)) from exc
        raise RunStopped(f"could not record the run of {self.pipeline_id}: too many conflicts")

    def _planned(self) -> dict[str, JsonObject | None]:
        """The draft's changes as the plan saw them (the draft at the plan's draft version).

        A fixed version never changes, so it is read once per run.
        """
        if self._planned_changes is None:
            planned = None
            if self.pipeline.draft_version:
                planned = self.app.draft(
                    self.pipeline.workspace_id, self.pipeline.user, self.pipeline.draft_version
                )
            self._planned_changes = {} if planned is None else planned.changes
        return self._planned_changes

    def _renew_if_due(self) -> None:
        now = self.clock()
        if self.pipeline.lease_due(now, self.lease):
            self.pipeline.claim(self.worker, now, self.lease)

    async def _save_async(self, mutate: Callable[[], None], *, with_draft: bool = False) -> None:
        await asyncio.to_thread(self._save, mutate, with_draft=with_draft)

    # --- the run --------------------------------------------------------------
    async def execute(self) -> PipelineState | None:
        """Run to a terminal state; returns it, or None when the lease was lost."""
        connector = self.connector_for(self.workspace)
        try:
            for phase in self.pipeline.phases:
                if phase in self.pipeline.completed_phases:
                    continue
                if self.pipeline.cancel_requested or self.fatal:
                    break
                await self._save_async(partial(self._start_phase, phase))
                await self._run_phase(phase, connector)
                if self.pipeline.cancel_requested or self.fatal:
                    break
                await self._save_async(partial(self._complete_phase, phase))
            if not (self.pipeline.cancel_requested or self.fatal):
                await self._finish_with_service(connector)
            await self._finish()
        except RunStopped as exc:
            log.warning("run of %s stopped: %s", self.pipeline_id, exc)
            return None
        return self.pipeline.state

    def _file_index(self, files: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        return self.app.views.record_ids(self.pipeline.workspace_id, files)

    def _main_copies(self, calls: list[Call]) -> dict[str, JsonObject] | None:
        """Main's copy of every record the calls update, to check upstream changes against.

        None when the plan lets the run overwrite them. Main is read after the
        projections caught up, so an earlier phase's writes are in it.
        """
        if self.pipeline.on_upstream_change != UpstreamPolicy.FAIL:
            return None
        entries = self.pipeline.entries
        paths = [
            entries[key].path
            for call in calls
            if call.kind == "update"
            for key in call.keys
            if entries[key].operation.get("record_id")
        ]
        if not paths:
            return {}
        self.app.catch_up()
        return self.app.views.main_contents(self.pipeline.workspace_id, paths)

    async def _finish_with_service(self, connector: Connector) -> None:
        """Tell the service what the run changed (a service with staged writes publishes it)."""
        changed: dict[str, list[str]] = {}
        for entry in self.pipeline.entries.values():
            op = entry.operation
            if entry.status == "published" and op["type"] != "delete" and entry.record_id:
                changed.setdefault(op["folder"], []).append(entry.record_id)
        try:
            await connector.finish_run({f: sorted(set(ids)) for f, ids in changed.items()})
        except ConnectorError as exc:
            self.fatal = f"the service did not take the run's changes live: {exc.message}"

    def _start_phase(self, phase: Phase) -> None:
        self.pipeline.start_phase(self.worker, phase)

    def _complete_phase(self, phase: Phase) -> None:
        self.pipeline.complete_phase(self.worker, phase)

    async def _finish(self) -> None:
        def terminal() -> None:
            if self.fatal:
                self.pipeline.fail(self.worker, self.fatal)
            elif self.pipeline.cancel_requested:
                self.pipeline.confirm_cancel(self.worker)
            else:
                self.pipeline.finish(self.worker)
            self.workspace.release_publish_lock(self.pipeline_id)

        await self._save_async(terminal, with_draft=True)

    async def _run_phase(self, phase: Phase, connector: Connector) -> None:
        """The phase's calls wave by wave: a wave goes out once the one before is recorded."""
        for calls in self.pipeline.open_calls(phase, connector.batch_limits):
            if self.pipeline.cancel_requested or self.fatal:
                return
            await self._run_wave(calls, connector)

    async def _run_wave(self, calls: list[Call], connector: Connector) -> None:
        """Rounds and calls overlap: a call waits for its intent's round, never for later ones.

        While one round saves (in a thread), calls whose intents earlier rounds
        saved keep starting as slots free up (``ready``), and their outcomes
        gather for the next round. A round records every outcome since the last
        one plus intents for up to ``WINDOWS_AHEAD * concurrency`` calls ahead
        (counting the ones ready but not started). Calls of one
        wave never depend on each other (dependencies point at earlier
        waves and phases), so outcomes need not gate dispatch within a wave. An
        intent saved but not yet sent when the worker dies is re-sent with its
        key on resume, like any other.
        """
        entries = self.pipeline.entries
        operations = [entries[key].operation for call in calls for key in call.keys]
        await asyncio.to_thread(self.record_ids.preload, self._file_index, operations)
        main = await asyncio.to_thread(self._main_copies, calls)
        queue = list(calls)
        ready: list[Call] = []
        """Intent saved, call not started: started as soon as a slot is free, even when stopping."""
        in_flight: dict[asyncio.Task[list[Outcome]], Call] = {}
        done: list[Outcome] = []
        saving: tuple[asyncio.Task[None], _Round] | None = None
        while True:
            while ready and len(in_flight) < self.concurrency:
                call = ready.pop(0)
                sent = send(connector, call, self.pipeline.entries, self.record_ids, main)
                in_flight[asyncio.create_task(sent)] = call
            stopping = bool(self.pipeline.cancel_requested or self.fatal)
            if saving is None:
                round_ = _Round(outcomes=done)
                done = []
                ahead = WINDOWS_AHEAD * self.concurrency - len(ready)
                while queue and not stopping and len(round_.intents) < ahead:
                    skips, left = self.pipeline.blocked_by(queue.pop(0))
                    round_.skips.extend(skips)
                    if left is not None:
                        round_.intents.append(left)
                if round_.outcomes or round_.skips or round_.intents:
                    save = self._save_async(partial(self._record_round, round_))
                    saving = (asyncio.create_task(save), round_)
            waiting: set[asyncio.Task[Any]] = set(in_flight)
            if saving is not None:
                waiting.add(saving[0])
            if not waiting:
                return  # everything sent and recorded (or stopping with nothing in flight)
            finished, _ = await asyncio.wait(
                waiting, timeout=self.lease.total_seconds() / 3, return_when=asyncio.FIRST_COMPLETED
            )
            for task in finished:
                if in_flight.pop(task, None) is not None:
                    done.extend(task.result())
                elif saving is not None:
                    task.result()  # the round's save: RunStopped propagates
                    ready.extend(saving[1].intents)
                    saving = None
            if not finished and saving is None:
                await self._save_async(lambda: None)  # renews the lease

    def _record_round(self, round_: _Round) -> None:
        """Record the round's events on the current aggregates (re-runnable after a reload)."""
        pipeline = self.pipeline
        verdicts = judge(round_.outcomes, pipeline.entries, self.schemas)
        if verdicts.fatal is not None:
            self.fatal = verdicts.fatal
        for failed in verdicts.failed:
            pipeline.fail_entry(
                self.worker, failed.key, failed.message, code=failed.code, details=failed.details
            )
        self.record_ids.created.update(verdicts.created)
        version = self.workspace.change_main(f"pipeline:{self.pipeline_id}", verdicts.main_changes)
        for published in verdicts.published:
            pipeline.publish_entry(
                self.worker, published.key, published.record_id, published.record, version
            )
        for key, reason in round_.skips:
            pipeline.skip_entry(self.worker, key, reason)
        for call in round_.intents:
            pipeline.dispatch_call(self.worker, call)


__all__ = ["PipelineRun", "RunStopped"]
