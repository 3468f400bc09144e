"""The PublishPipeline aggregate: one plan and its execution, as a state machine.

Timings (created, started, finished) are the events' own timestamps, kept by
the status projection; the aggregate keeps only what its decisions need.

Public commands decide (check the transition table, raise a named error) and
then record; the ``@event`` apply-methods only change state, because they
re-run on every replay.

Leases fence workers: every recording command names its worker and is refused
unless that worker holds the lease. A worker that lost its lease while asleep
still *believes* it holds it in memory, but its save is rejected by optimistic
concurrency because the new holder's ``LeaseAcquired`` moved the version on.
"""

from __future__ import annotations

from copy import deepcopy
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.calls import BatchLimits, Call, blocked_by, group_calls
from domain.entries import EntryStatus, PipelineEntry
from domain.errors import IllegalTransition, LeaseLost, StalePlan
from domain.json_types import JsonObject, JsonValue
from domain.plan import PHASES, EntryKey, Phase, PlanEntry, UpstreamPolicy, entry_key
from domain.states import TERMINAL_STATES, TRANSITIONS, PipelineState, stale_reason

COUNTED = ("planned", "published", "failed", "skipped")
"""What a phase's counts report: open entries count as planned."""


def _iso(moment: datetime) -> str:
    return moment.isoformat()


class PublishPipeline(Aggregate):
    @staticmethod
    def create_id(pipeline_id: str, **_: Any) -> UUID:
        return UUID(pipeline_id)

    def __deepcopy__(self, memo: dict[int, Any]) -> PublishPipeline:
        """The copy a command works on (the repository copies cached aggregates).

        Entries are copied one level down (``PipelineEntry.copy``): their plan
        never changes after ``EntryPlanned``, so the copy shares it. A plan of
        thousands of entries copies in about a millisecond instead of a tenth
        of a second.
        """
        clone = object.__new__(type(self))
        memo[id(self)] = clone
        for name, value in self.__dict__.items():
            if name == "entries":
                clone.__dict__[name] = {key: entry.copy() for key, entry in value.items()}
            else:
                clone.__dict__[name] = deepcopy(value, memo)
        return clone

    @event("PipelinePlanned")
    def __init__(
        self,
        pipeline_id: str,
        workspace_id: str,
        user: str,
        main_version: int,
        draft_version: int,
        phases: list[JsonObject],
        on_upstream_change: str = UpstreamPolicy.FAIL,
        trace_id: str | None = None,
    ) -> None:
        self.pipeline_id = pipeline_id
        self.workspace_id = workspace_id
        self.user = user
        self.main_version = main_version
        self.draft_version = draft_version
        self.phases = [Phase(p["phase"]) for p in phases]
        self.on_upstream_change = UpstreamPolicy(on_upstream_change)
        self.trace_id = trace_id
        """The trace of the request that planned it: its run's log lines carry it too."""
        self.state = PipelineState.PLANNED
        self.phase: Phase | None = None
        self.entries: dict[EntryKey, PipelineEntry] = {}
        self.lease_owner: str | None = None
        self.lease_expires_at: str | None = None
        self.cancel_requested = False
        self.error: str | None = None
        self.last_main_version = main_version
        self.completed_phases: list[Phase] = []
        self.attempt = 0
        """Number of retries: part of each call's idempotency key, so a retried call is new."""

    # --- the transition table -------------------------------------------
    def _require(self, command: str) -> None:
        if self.state not in TRANSITIONS[command]:
            raise IllegalTransition(
                f"cannot {command.replace('_', ' ')} pipeline {self.pipeline_id}: "
                f"it is {self.state}",
                {"state": self.state},
            )

    def _require_worker(self, worker: str) -> None:
        self._require("work")
        if self.lease_owner != worker:
            raise LeaseLost(f"worker {worker} does not hold the lease of {self.pipeline_id}")

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    # --- planning ---------------------------------------------------------
    def plan_entries(self, entries: list[PlanEntry]) -> None:
        if self.state != PipelineState.PLANNED or self.entries:
            raise IllegalTransition(f"pipeline {self.pipeline_id} is already planned")
        for entry in entries:
            self._entry_planned(
                entry.path,
                entry.phase,
                entry.operation,
                list(entry.deferred_fields),
                list(entry.depends_on),
                entry.before,
            )

    @event("EntryPlanned")
    def _entry_planned(
        self,
        path: str,
        phase: str,
        operation: JsonObject,
        deferred_fields: list[str],
        depends_on: list[str],
        before: JsonObject | None = None,
    ) -> None:
        entry = PipelineEntry(
            path,
            Phase(phase),
            operation,
            deferred_fields,
            depends_on,
            {} if before is None else before,
            record_id=operation.get("record_id"),
        )
        self.entries[entry.key] = entry

    # --- run, retry, stale, cancel ----------------------------------------
    def staleness(self, main_version: int, draft_version: int | None) -> str | None:
        """Why running this plan now would publish something nobody reviewed (``stale_reason``)."""
        return stale_reason(self, main_version, draft_version)

    def request_run(self, *, main_version: int, draft_version: int) -> None:
        """Queue the run, or refuse a stale plan (``StalePlan``).

        A refused plan that never ran ends in state ``stale`` (the event is
        recorded before the error is raised: save the pipeline, then re-raise).
        """
        self._require("run")
        reason = self.staleness(main_version, draft_version)
        if reason is not None:
            if self.state == PipelineState.PLANNED:
                self._stale(reason)
            raise StalePlan(reason, {"pipeline_id": self.pipeline_id})
        self._run_requested(resumed=self.state == PipelineState.FAILED)

    @event("PipelineRunRequested")
    def _run_requested(self, resumed: bool) -> None:
        self.state = PipelineState.RUNNING
        self.error = None
        self.lease_owner = None
        self.lease_expires_at = None

    def request_retry(self, *, main_version: int) -> None:
        """Run the entries that did not publish again, with new idempotency keys."""
        self._require("retry")
        reason = self.staleness(main_version, None)
        if reason is not None:
            raise StalePlan(reason, {"pipeline_id": self.pipeline_id})
        keys = [k for k, e in self.entries.items() if e.status != EntryStatus.PUBLISHED]
        if not keys:
            raise IllegalTransition(f"pipeline {self.pipeline_id} has nothing to retry")
        self._retry_requested(keys)

    @event("RetryRequested")
    def _retry_requested(self, entries: list[str]) -> None:
        for key in entries:
            entry = self.entries[key]
            if entry.status in (EntryStatus.FAILED, EntryStatus.SKIPPED):
                entry.status = EntryStatus.PLANNED
                entry.error, entry.error_code, entry.error_details = None, None, None
            if entry.phase in self.completed_phases:
                self.completed_phases.remove(entry.phase)
        self.state = PipelineState.RUNNING
        self.error = None
        self.cancel_requested = False
        self.lease_owner = None
        self.lease_expires_at = None
        self.attempt += 1

    def mark_stale(self, reason: str) -> None:
        self._require("mark_stale")
        self._stale(reason)

    @event("PipelineStale")
    def _stale(self, reason: str) -> None:
        self.state = PipelineState.STALE
        self.error = reason

    def request_cancel(self) -> None:
        self._require("cancel")
        if self.state == PipelineState.PLANNED:
            self._cancelled()
        elif not self.cancel_requested:
            self._cancel_requested()

    @event("CancelRequested")
    def _cancel_requested(self) -> None:
        self.cancel_requested = True

    # --- leases -----------------------------------------------------------
    def lease_expired(self, now: datetime) -> bool:
        return self.lease_expires_at is None or datetime.fromisoformat(self.lease_expires_at) <= now

    def runnable(self, now: datetime) -> bool:
        """Whether a worker may claim it now: running, and nobody's lease is live."""
        return self.state == PipelineState.RUNNING and self.lease_expired(now)

    def claim(self, worker: str, now: datetime, lease: timedelta) -> None:
        """Take (or renew) the lease. Refused while another worker's lease is live."""
        self._require("claim")
        if self.lease_owner == worker:
            self._lease_renewed(worker, _iso(now + lease))
        elif self.lease_expired(now):
            self._lease_acquired(worker, _iso(now + lease), self.lease_owner)
        else:
            raise LeaseLost(
                f"pipeline {self.pipeline_id} is leased by {self.lease_owner} "
                f"until {self.lease_expires_at}"
            )

    def lease_due(self, now: datetime, lease: timedelta) -> bool:
        """Whether the holder should renew: less than half of its lease is left."""
        expires = self.lease_expires_at
        return expires is None or datetime.fromisoformat(expires) - now < lease / 2

    @event("LeaseAcquired")
    def _lease_acquired(self, worker: str, expires_at: str, previous: str | None) -> None:
        self.lease_owner = worker
        self.lease_expires_at = expires_at

    @event("LeaseRenewed")
    def _lease_renewed(self, worker: str, expires_at: str) -> None:
        self.lease_expires_at = expires_at

    # --- the run ------------------------------------------------------------
    def start_phase(self, worker: str, phase: Phase) -> None:
        self._require_worker(worker)
        if phase not in PHASES:
            raise IllegalTransition(f"unknown phase {phase!r}")
        if self.phase != phase:
            self._phase_started(phase)

    @event("PhaseStarted")
    def _phase_started(self, phase: str) -> None:
        self.phase = Phase(phase)

    def dispatch(self, worker: str, key: EntryKey, idempotency_key: str) -> None:
        """Record the intent to send an entry, before the call goes out."""
        self._require_worker(worker)
        entry = self._open_entry(key)
        if entry.status != EntryStatus.DISPATCHED:
            self._entry_dispatched(entry.path, entry.phase, idempotency_key)

    def dispatch_call(self, worker: str, call: Call) -> None:
        """Record the intent to send a call (a batch of entries), before it goes out.

        One event per call, not per entry: a batch of 100 records is one
        request, and its intent is one row to write and replay.
        """
        self._require_worker(worker)
        entries = [self._open_entry(key) for key in call.keys]
        paths = [e.path for e in entries if e.status != EntryStatus.DISPATCHED]
        if paths:
            self._call_dispatched(entries[0].phase, paths, call.idempotency_key)

    @event("EntryDispatched")
    def _entry_dispatched(self, path: str, phase: str, idempotency_key: str) -> None:
        entry = self.entries[entry_key(phase, path)]
        entry.status = EntryStatus.DISPATCHED
        entry.idempotency_key = idempotency_key

    @event("CallDispatched")
    def _call_dispatched(self, phase: str, paths: list[str], idempotency_key: str) -> None:
        for path in paths:
            entry = self.entries[entry_key(phase, path)]
            entry.status = EntryStatus.DISPATCHED
            entry.idempotency_key = idempotency_key

    def publish_entry(
        self,
        worker: str,
        key: EntryKey,
        record_id: str | None,
        record: JsonObject | None,
        main_version: int,
    ) -> None:
        self._require_worker(worker)
        entry = self._open_entry(key)
        self._entry_published(entry.path, entry.phase, record_id, record, main_version)

    @event("EntryPublished")
    def _entry_published(
        self,
        path: str,
        phase: str,
        record_id: str | None,
        record: JsonObject | None,
        main_version: int,
    ) -> None:
        entry = self.entries[entry_key(phase, path)]
        entry.status = EntryStatus.PUBLISHED
        entry.record_id = record_id
        entry.error, entry.error_code, entry.error_details = None, None, None
        self.last_main_version = main_version

    def fail_entry(
        self,
        worker: str,
        key: EntryKey,
        error: str,
        *,
        code: str = "rejected",
        details: JsonValue = None,
    ) -> None:
        """``code`` names the kind of failure (API.md: ``rejected``, ``changed_upstream``, ...)."""
        self._require_worker(worker)
        entry = self._open_entry(key)
        self._entry_failed(entry.path, entry.phase, error, code, details)

    @event("EntryFailed")
    def _entry_failed(
        self, path: str, phase: str, error: str, code: str = "rejected", details: JsonValue = None
    ) -> None:
        entry = self.entries[entry_key(phase, path)]
        entry.status = EntryStatus.FAILED
        entry.error, entry.error_code, entry.error_details = error, code, details

    def skip_entry(self, worker: str, key: EntryKey, reason: str) -> None:
        self._require_worker(worker)
        entry = self._open_entry(key)
        self._entry_skipped(entry.path, entry.phase, reason)

    @event("EntrySkipped")
    def _entry_skipped(self, path: str, phase: str, reason: str) -> None:
        entry = self.entries[entry_key(phase, path)]
        entry.status = EntryStatus.SKIPPED
        entry.error, entry.error_code = reason, "skipped_dependency"

    def complete_phase(self, worker: str, phase: Phase) -> None:
        self._require_worker(worker)
        if phase in self.completed_phases:
            return
        if any(e.is_open for e in self.entries_of(phase)):
            raise IllegalTransition(f"phase {phase} of {self.pipeline_id} still has open entries")
        self._phase_completed(phase, self.phase_counts(phase))

    @event("PhaseCompleted")
    def _phase_completed(self, phase: str, counts: dict[str, int]) -> None:
        if phase not in self.completed_phases:
            self.completed_phases.append(Phase(phase))

    def finish(self, worker: str) -> None:
        self._require_worker(worker)
        if any(e.is_open for e in self.entries.values()):
            raise IllegalTransition(f"pipeline {self.pipeline_id} still has open entries")
        clean = all(e.status == EntryStatus.PUBLISHED for e in self.entries.values())
        state = PipelineState.COMPLETED if clean else PipelineState.COMPLETED_WITH_ERRORS
        self._completed(state, self.counts())

    @event("PipelineCompleted")
    def _completed(self, state: str, counts: dict[str, dict[str, int]]) -> None:
        self.state = PipelineState(state)
        self._end()

    def fail(self, worker: str, error: str) -> None:
        self._require_worker(worker)
        self._failed(error)

    @event("PipelineFailed")
    def _failed(self, error: str) -> None:
        self.state = PipelineState.FAILED
        self.error = error
        self._end()

    def confirm_cancel(self, worker: str) -> None:
        self._require_worker(worker)
        self._cancelled()

    @event("PipelineCancelled")
    def _cancelled(self) -> None:
        self.state = PipelineState.CANCELLED
        self._end()

    def _end(self) -> None:
        self.lease_owner = None
        self.lease_expires_at = None
        self.cancel_requested = False

    # --- decisions of the run -------------------------------------------------

    def open_calls(self, phase: Phase, limits: BatchLimits) -> list[list[Call]]:
        """What is left to send in a phase, as calls wave by wave (see ``domain.calls``)."""
        return group_calls(self.pipeline_id, self.attempt, phase, self.entries_of(phase), limits)

    def blocked_by(self, call: Call) -> tuple[list[tuple[EntryKey, str]], Call | None]:
        """The entries of a call that must be skipped, with why, and the call left to send."""
        return blocked_by(call, self.entries)

    # --- queries ------------------------------------------------------------
    def _open_entry(self, key: EntryKey) -> PipelineEntry:
        entry = self.entries.get(key)
        if entry is None:
            raise IllegalTransition(f"pipeline {self.pipeline_id} has no entry {key}")
        if not entry.is_open:
            raise IllegalTransition(f"entry {key} is already {entry.status}")
        return entry

    def entries_of(self, phase: Phase) -> list[PipelineEntry]:
        return [e for e in self.entries.values() if e.phase == phase]

    def phase_counts(self, phase: Phase) -> dict[str, int]:
        counts = dict.fromkeys(COUNTED, 0)
        for entry in self.entries_of(phase):
            counts["planned" if entry.is_open else entry.status] += 1
        return counts

    def counts(self) -> dict[str, dict[str, int]]:
        return {phase: self.phase_counts(phase) for phase in self.phases}

    def created_record_ids(self) -> dict[str, str]:
        """path -> record id of every record this pipeline created."""
        return {
            e.path: e.record_id
            for e in self.entries_of(Phase.CREATE)
            if e.status == EntryStatus.PUBLISHED and e.record_id
        }

    def published_paths(self) -> list[str]:
        """Paths all of whose entries are published: they leave the draft."""
        status: dict[str, bool] = {}
        for e in self.entries.values():
            status[e.path] = status.get(e.path, True) and e.status == EntryStatus.PUBLISHED
        return sorted(p for p, ok in status.items() if ok)
