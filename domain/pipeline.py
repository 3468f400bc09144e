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

from domain.errors import IllegalTransition, LeaseLost
from domain.json_types import JsonObject
from domain.plan import PHASES, PlanEntry, entry_key

PLANNED = "planned"
RUNNING = "running"
COMPLETED = "completed"
COMPLETED_WITH_ERRORS = "completed_with_errors"
FAILED = "failed"
CANCELLED = "cancelled"
STALE = "stale"
TERMINAL_STATES = frozenset({COMPLETED, COMPLETED_WITH_ERRORS, FAILED, CANCELLED, STALE})

# command -> states it is legal in
TRANSITIONS: dict[str, frozenset[str]] = {
    "run": frozenset({PLANNED, FAILED}),
    "retry": frozenset({COMPLETED_WITH_ERRORS, FAILED, CANCELLED}),
    "mark_stale": frozenset({PLANNED}),
    "cancel": frozenset({PLANNED, RUNNING}),
    "claim": frozenset({RUNNING}),
    "work": frozenset({RUNNING}),
}

# entry statuses
E_PLANNED = "planned"
E_DISPATCHED = "dispatched"
E_PUBLISHED = "published"
E_FAILED = "failed"
E_SKIPPED = "skipped"
OPEN_STATUSES = frozenset({E_PLANNED, E_DISPATCHED})


def _iso(moment: datetime) -> str:
    return moment.isoformat()


class PublishPipeline(Aggregate):
    @staticmethod
    def create_id(pipeline_id: str, **_: Any) -> UUID:
        return UUID(pipeline_id)

    def __deepcopy__(self, memo: dict[int, Any]) -> PublishPipeline:
        """The copy a command works on (the repository copies cached aggregates).

        Entries are copied one level down: only their top-level fields change
        after ``EntryPlanned``; the plan inside them (operation, deferred
        fields, dependencies) never does, so the copy shares it. A plan of
        thousands of entries copies in about a millisecond instead of a tenth
        of a second.
        """
        clone = object.__new__(type(self))
        memo[id(self)] = clone
        for name, value in self.__dict__.items():
            if name == "entries":
                clone.__dict__[name] = {key: dict(entry) for key, entry in value.items()}
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
    ) -> None:
        self.pipeline_id = pipeline_id
        self.workspace_id = workspace_id
        self.user = user
        self.main_version = main_version
        self.draft_version = draft_version
        self.phases = [p["phase"] for p in phases]
        self.state = PLANNED
        self.phase: str | None = None
        self.entries: dict[str, JsonObject] = {}
        self.lease_owner: str | None = None
        self.lease_expires_at: str | None = None
        self.cancel_requested = False
        self.error: str | None = None
        self.last_main_version = main_version
        self.completed_phases: list[str] = []
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
        if self.state != PLANNED or self.entries:
            raise IllegalTransition(f"pipeline {self.pipeline_id} is already planned")
        for entry in entries:
            self._entry_planned(
                entry.path,
                entry.phase,
                entry.operation,
                list(entry.deferred_fields),
                list(entry.depends_on),
            )

    @event("EntryPlanned")
    def _entry_planned(
        self,
        path: str,
        phase: str,
        operation: JsonObject,
        deferred_fields: list[str],
        depends_on: list[str],
    ) -> None:
        self.entries[entry_key(phase, path)] = {
            "path": path,
            "phase": phase,
            "operation": operation,
            "deferred_fields": deferred_fields,
            "depends_on": depends_on,
            "status": E_PLANNED,
            "record_id": operation.get("record_id"),
            "error": None,
            "idempotency_key": None,
        }

    # --- run, retry, stale, cancel ----------------------------------------
    def request_run(self) -> None:
        self._require("run")
        self._run_requested(resumed=self.state == FAILED)

    @event("PipelineRunRequested")
    def _run_requested(self, resumed: bool) -> None:
        self.state = RUNNING
        self.error = None
        self.lease_owner = None
        self.lease_expires_at = None

    def request_retry(self) -> None:
        self._require("retry")
        keys = [
            k
            for k, e in self.entries.items()
            if e["status"] in (E_FAILED, E_SKIPPED, E_PLANNED, E_DISPATCHED)
        ]
        if not keys:
            raise IllegalTransition(f"pipeline {self.pipeline_id} has nothing to retry")
        self._retry_requested(keys)

    @event("RetryRequested")
    def _retry_requested(self, entries: list[str]) -> None:
        for key in entries:
            entry = self.entries[key]
            if entry["status"] in (E_FAILED, E_SKIPPED):
                entry["status"] = E_PLANNED
                entry["error"] = None
            if entry["phase"] in self.completed_phases:
                self.completed_phases.remove(entry["phase"])
        self.state = RUNNING
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
        self.state = STALE
        self.error = reason

    def request_cancel(self) -> None:
        self._require("cancel")
        if self.state == PLANNED:
            self._cancelled()
        elif not self.cancel_requested:
            self._cancel_requested()

    @event("CancelRequested")
    def _cancel_requested(self) -> None:
        self.cancel_requested = True

    # --- leases -----------------------------------------------------------
    def lease_expired(self, now: datetime) -> bool:
        return self.lease_expires_at is None or datetime.fromisoformat(self.lease_expires_at) <= now

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

    @event("LeaseAcquired")
    def _lease_acquired(self, worker: str, expires_at: str, previous: str | None) -> None:
        self.lease_owner = worker
        self.lease_expires_at = expires_at

    @event("LeaseRenewed")
    def _lease_renewed(self, worker: str, expires_at: str) -> None:
        self.lease_expires_at = expires_at

    # --- the run ------------------------------------------------------------
    def start_phase(self, worker: str, phase: str) -> None:
        self._require_worker(worker)
        if phase not in PHASES:
            raise IllegalTransition(f"unknown phase {phase!r}")
        if self.phase != phase:
            self._phase_started(phase)

    @event("PhaseStarted")
    def _phase_started(self, phase: str) -> None:
        self.phase = phase

    def dispatch(self, worker: str, key: str, idempotency_key: str) -> None:
        """Record the intent to send an entry, before the call goes out."""
        self._require_worker(worker)
        entry = self._open_entry(key)
        if entry["status"] != E_DISPATCHED:
            self._entry_dispatched(entry["path"], entry["phase"], idempotency_key)

    @event("EntryDispatched")
    def _entry_dispatched(self, path: str, phase: str, idempotency_key: str) -> None:
        entry = self.entries[entry_key(phase, path)]
        entry["status"] = E_DISPATCHED
        entry["idempotency_key"] = idempotency_key

    def publish_entry(
        self,
        worker: str,
        key: str,
        record_id: str | None,
        record: JsonObject | None,
        main_version: int,
    ) -> None:
        self._require_worker(worker)
        entry = self._open_entry(key)
        self._entry_published(entry["path"], entry["phase"], record_id, record, main_version)

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
        entry["status"] = E_PUBLISHED
        entry["record_id"] = record_id
        entry["error"] = None
        self.last_main_version = main_version

    def fail_entry(self, worker: str, key: str, error: str) -> None:
        self._require_worker(worker)
        entry = self._open_entry(key)
        self._entry_failed(entry["path"], entry["phase"], error)

    @event("EntryFailed")
    def _entry_failed(self, path: str, phase: str, error: str) -> None:
        entry = self.entries[entry_key(phase, path)]
        entry["status"] = E_FAILED
        entry["error"] = error

    def skip_entry(self, worker: str, key: str, reason: str) -> None:
        self._require_worker(worker)
        entry = self._open_entry(key)
        self._entry_skipped(entry["path"], entry["phase"], reason)

    @event("EntrySkipped")
    def _entry_skipped(self, path: str, phase: str, reason: str) -> None:
        entry = self.entries[entry_key(phase, path)]
        entry["status"] = E_SKIPPED
        entry["error"] = reason

    def complete_phase(self, worker: str, phase: str) -> None:
        self._require_worker(worker)
        if phase in self.completed_phases:
            return
        if any(e["status"] in OPEN_STATUSES for e in self.entries_of(phase)):
            raise IllegalTransition(f"phase {phase} of {self.pipeline_id} still has open entries")
        self._phase_completed(phase, self.phase_counts(phase))

    @event("PhaseCompleted")
    def _phase_completed(self, phase: str, counts: dict[str, int]) -> None:
        if phase not in self.completed_phases:
            self.completed_phases.append(phase)

    def finish(self, worker: str) -> None:
        self._require_worker(worker)
        if any(e["status"] in OPEN_STATUSES for e in self.entries.values()):
            raise IllegalTransition(f"pipeline {self.pipeline_id} still has open entries")
        clean = all(e["status"] == E_PUBLISHED for e in self.entries.values())
        self._completed(COMPLETED if clean else COMPLETED_WITH_ERRORS, self.counts())

    @event("PipelineCompleted")
    def _completed(self, state: str, counts: dict[str, dict[str, int]]) -> None:
        self.state = state
        self._end()

    def fail(self, worker: str, error: str) -> None:
        self._require_worker(worker)
        self._failed(error)

    @event("PipelineFailed")
    def _failed(self, error: str) -> None:
        self.state = FAILED
        self.error = error
        self._end()

    def confirm_cancel(self, worker: str) -> None:
        self._require_worker(worker)
        self._cancelled()

    @event("PipelineCancelled")
    def _cancelled(self) -> None:
        self.state = CANCELLED
        self._end()

    def _end(self) -> None:
        self.lease_owner = None
        self.lease_expires_at = None
        self.cancel_requested = False

    # --- queries ------------------------------------------------------------
    def _open_entry(self, key: str) -> JsonObject:
        entry = self.entries.get(key)
        if entry is None:
            raise IllegalTransition(f"pipeline {self.pipeline_id} has no entry {key}")
        if entry["status"] not in OPEN_STATUSES:
            raise IllegalTransition(f"entry {key} is already {entry['status']}")
        return entry

    def entries_of(self, phase: str) -> list[JsonObject]:
        return [e for e in self.entries.values() if e["phase"] == phase]

    def phase_counts(self, phase: str) -> dict[str, int]:
        counts = {"planned": 0, "published": 0, "failed": 0, "skipped": 0}
        for entry in self.entries_of(phase):
            status = entry["status"]
            counts["planned" if status in OPEN_STATUSES else status] += 1
        return counts

    def counts(self) -> dict[str, dict[str, int]]:
        return {phase: self.phase_counts(phase) for phase in self.phases}

    def created_record_ids(self) -> dict[str, str]:
        """path -> record id of every record this pipeline created."""
        return {
            e["path"]: e["record_id"]
            for e in self.entries_of("create")
            if e["status"] == E_PUBLISHED and e["record_id"]
        }

    def published_paths(self) -> list[str]:
        """Paths all of whose entries are published: they leave the draft."""
        status: dict[str, bool] = {}
        for e in self.entries.values():
            status[e["path"]] = status.get(e["path"], True) and e["status"] == E_PUBLISHED
        return sorted(p for p, ok in status.items() if ok)
