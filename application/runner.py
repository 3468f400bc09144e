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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from eventsourcing.persistence import IntegrityError

from application.app import PublishdApplication
from application.connector import (
    Connector,
    ConnectorError,
    FatalConnectorError,
    Record,
)
from application.records import record_to_file
from domain.errors import DomainError, LeaseLost
from domain.ids import idempotency_key
from domain.json_types import JsonObject
from domain.paths import FilePath
from domain.pipeline import E_DISPATCHED, E_FAILED, E_PLANNED, E_SKIPPED, PublishPipeline
from domain.references import iter_at_refs, resolve_refs
from domain.schema import FolderSchema
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
class Unit:
    """One external call: a single entry, or a page of deletes."""

    keys: list[str]
    idempotency_key: str
    operation: JsonObject


@dataclass
class Outcome:
    unit: Unit
    record: Record | None = None
    error: ConnectorError | None = None


@dataclass
class _Round:
    outcomes: list[Outcome] = field(default_factory=list)
    skips: list[tuple[str, str]] = field(default_factory=list)
    intents: list[Unit] = field(default_factory=list)


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
        self.record_ids: dict[FilePath, str] = {}
        self.created: dict[str, str] = self.pipeline.created_record_ids()
        self.fatal: str | None = None

    # --- saving -------------------------------------------------------------
    def _reload(self) -> None:
        self.pipeline = self.app.pipeline(self.pipeline_id)
        self.workspace = self.app.workspace(self.pipeline.workspace_id)
        if self.pipeline.lease_owner != self.worker:
            raise RunStopped(f"{self.worker} lost the lease of {self.pipeline_id}")
        self.created = self.pipeline.created_record_ids()

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
                        draft.rebase(self.pipeline_id, self.pipeline.published_paths())
                self.app.save_all(self.pipeline, self.workspace, draft)
                return
            except IntegrityError:
                self._reload()
            except LeaseLost as exc:
                raise RunStopped(str(exc)) from exc
        raise RunStopped(f"could not record the run of {self.pipeline_id}: too many conflicts")

    def _renew_if_due(self) -> None:
        expires = self.pipeline.lease_expires_at
        now = self.clock()
        if expires is None or datetime.fromisoformat(expires) - now < self.lease / 2:
            self.pipeline.claim(self.worker, now, self.lease)

    async def _save_async(self, mutate: Callable[[], None], *, with_draft: bool = False) -> None:
        await asyncio.to_thread(self._save, mutate, with_draft=with_draft)

    # --- the run --------------------------------------------------------------
    async def execute(self) -> str | None:
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
            await self._finish()
        except RunStopped as exc:
            log.warning("run of %s stopped: %s", self.pipeline_id, exc)
            return None
        return self.pipeline.state

    def _start_phase(self, phase: str) -> None:
        self.pipeline.start_phase(self.worker, phase)

    def _complete_phase(self, phase: str) -> None:
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

    async def _run_phase(self, phase: str, connector: Connector) -> None:
        """Rounds and calls overlap: a call waits for its intent's round, never for later ones.

        While one round saves (in a thread), calls whose intents earlier rounds
        saved keep starting as slots free up (``ready``), and their outcomes
        gather for the next round. A round records every outcome since the last
        one plus intents for up to ``WINDOWS_AHEAD * concurrency`` calls ahead
        (counting the ones ready but not started). Units of one
        phase never depend on each other (dependencies point at earlier
        phases), so outcomes need not gate dispatch within a phase. An intent
        saved but not yet sent when the worker dies is re-sent with its key on
        resume, like any other.
        """
        units = self._units(phase, connector.delete_page_size)
        await asyncio.to_thread(self._preload_record_ids, units)
        queue = list(units)
        ready: list[Unit] = []
        """Intent saved, call not started: started as soon as a slot is free, even when stopping."""
        in_flight: dict[asyncio.Task[Outcome], Unit] = {}
        done: list[Outcome] = []
        saving: tuple[asyncio.Task[None], _Round] | None = None
        while True:
            while ready and len(in_flight) < self.concurrency:
                unit = ready.pop(0)
                in_flight[asyncio.create_task(self._send(connector, unit))] = unit
            stopping = bool(self.pipeline.cancel_requested or self.fatal)
            if saving is None:
                round_ = _Round(outcomes=done)
                done = []
                ahead = WINDOWS_AHEAD * self.concurrency - len(ready)
                while queue and not stopping and len(round_.intents) < ahead:
                    unit = queue.pop(0)
                    reason = self._blocked_by(unit)
                    if reason is not None:
                        round_.skips.extend((key, reason) for key in unit.keys)
                    else:
                        round_.intents.append(unit)
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
                    done.append(task.result())
                elif saving is not None:
                    task.result()  # the round's save: RunStopped propagates
                    ready.extend(saving[1].intents)
                    saving = None
            if not finished and saving is None:
                await self._save_async(lambda: None)  # renews the lease

    def _record_round(self, round_: _Round) -> None:
        """Decide the round's events on the current aggregates (re-runnable after a reload)."""
        pipeline, workspace = self.pipeline, self.workspace
        published: list[tuple[str, str | None, JsonObject | None]] = []
        changes: list[JsonObject] = []
        for outcome in round_.outcomes:
            error = outcome.error
            if isinstance(error, FatalConnectorError):
                self.fatal = error.message
                continue  # stays dispatched: reconciled with the same key on resume
            if error is not None:
                for key in outcome.unit.keys:
                    pipeline.fail_entry(self.worker, key, error.message)
                continue
            for key in outcome.unit.keys:
                entry = pipeline.entries[key]
                folder = entry["operation"]["folder"]
                if entry["operation"]["type"] == "delete":
                    record_id = entry["operation"]["record_id"]
                    changes.append({"path": entry["path"], "content": None, "record_id": record_id})
                    published.append((key, record_id, None))
                else:
                    assert outcome.record is not None
                    content = record_to_file(outcome.record, self.schemas[folder])
                    changes.append(
                        {"path": entry["path"], "content": content, "record_id": outcome.record.id}
                    )
                    published.append((key, outcome.record.id, content))
                    if entry["phase"] == "create":
                        self.created[entry["path"]] = outcome.record.id
        version = workspace.change_main(f"pipeline:{self.pipeline_id}", changes)
        for key, record_id, record in published:
            pipeline.publish_entry(self.worker, key, record_id, record, version)
        for key, reason in round_.skips:
            pipeline.skip_entry(self.worker, key, reason)
        for unit in round_.intents:
            for key in unit.keys:
                pipeline.dispatch(self.worker, key, unit.idempotency_key)

    # --- units and dependencies ---------------------------------------------
    def _units(self, phase: str, page_size: int) -> list[Unit]:
        """Open entries as calls: re-sent intents first (same key), then new ones."""
        entries = [
            e for e in self.pipeline.entries_of(phase) if e["status"] in (E_PLANNED, E_DISPATCHED)
        ]
        resend: dict[str, Unit] = {}
        fresh: list[Unit] = []
        pages: dict[tuple[str, int], Unit] = {}
        attempt = self.pipeline.attempt
        for entry in sorted(entries, key=lambda e: e["path"]):
            key = f"{entry['phase']}:{entry['path']}"
            op = entry["operation"]
            if entry["status"] == E_DISPATCHED:
                unit = resend.setdefault(
                    entry["idempotency_key"], Unit([], entry["idempotency_key"], op)
                )
                unit.keys.append(key)
            elif op["type"] == "delete":
                page = pages.get((op["folder"], op["page"]))
                if page is None or len(page.keys) >= page_size:
                    page = Unit(
                        [],
                        idempotency_key(self.pipeline_id, phase, f"{entry['path']}#{attempt}"),
                        op,
                    )
                    pages[(op["folder"], op["page"])] = page
                    fresh.append(page)
                page.keys.append(key)
            else:
                fresh.append(
                    Unit(
                        [key],
                        idempotency_key(self.pipeline_id, phase, f"{entry['path']}#{attempt}"),
                        op,
                    )
                )
        return list(resend.values()) + fresh

    def _blocked_by(self, unit: Unit) -> str | None:
        for key in unit.keys:
            for dependency in self.pipeline.entries[key]["depends_on"]:
                status = self.pipeline.entries[dependency]["status"]
                if status == E_FAILED:
                    return f"depends on {dependency}, which failed"
                if status == E_SKIPPED:
                    return f"depends on {dependency}, which was skipped"
        return None

    def _preload_record_ids(self, units: Sequence[Unit]) -> None:
        targets = {
            target for unit in units for _, target in iter_at_refs(unit.operation.get("fields", {}))
        }
        if targets:
            found = self.app.views.record_ids(
                self.pipeline.workspace_id, [(t.folder, t.filename) for t in targets]
            )
            for (folder, filename), record_id in found.items():
                self.record_ids[FilePath(folder, filename)] = record_id

    def _lookup(self, target: FilePath) -> str | None:
        return self.created.get(target.path) or self.record_ids.get(target)

    # --- one call ---------------------------------------------------------------
    async def _send(self, connector: Connector, unit: Unit) -> Outcome:
        op = unit.operation
        try:
            if op["type"] == "delete":
                ids = [self.pipeline.entries[k]["operation"]["record_id"] for k in unit.keys]
                await connector.delete_many(op["folder"], ids, unit.idempotency_key)
                return Outcome(unit)
            fields = resolve_refs(op["fields"], self._lookup)
            for where, target in iter_at_refs(fields):
                raise UnresolvedReference(
                    f"{where} points at {target.path}, which has no record id"
                )
            if op["type"] == "create":
                record = await connector.create(op["folder"], fields, unit.idempotency_key)
            else:
                path = self.pipeline.entries[unit.keys[0]]["path"]
                record_id = op.get("record_id") or self.created.get(path)
                if record_id is None:
                    raise UnresolvedReference(f"{path} has no record id to update")
                record = await connector.update(
                    op["folder"], record_id, fields, unit.idempotency_key
                )
            return Outcome(unit, record=record)
        except ConnectorError as exc:
            return Outcome(unit, error=exc)
        except DomainError as exc:
            return Outcome(unit, error=ConnectorError(exc.message))


class UnresolvedReference(DomainError):
    """An @-reference whose target has no record id at the moment of sending."""


__all__ = ["Outcome", "PipelineRun", "RunStopped", "Unit"]
