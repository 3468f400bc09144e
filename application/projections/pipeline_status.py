"""PipelineStatus: state, current phase, per-phase counts, errors and timings.

Counts are kept as deltas (``total``, ``published``, ``failed``, ``skipped`` per
phase; planned is the rest), so a batch of a thousand outcomes is one update
per pipeline instead of one per outcome. Errors are the failed and skipped
entries with their message; a retry moves them back to planned, which only the
stored errors can tell, so the writer applies it.
"""

from __future__ import annotations

from collections.abc import Sequence

from application.projections.events import ProjectedEvent
from application.projections.pipeline_entries import OUTCOMES, split_entry_key
from application.projections.ports import (
    ErrorRow,
    PipelineStatusWriter,
    Projection,
    ProjectionContext,
    StatusChange,
    StatusRow,
)
from domain.json_types import JsonObject
from domain.plan import PHASES

SLOTS = ("total", "published", "failed", "skipped")
WIDTH = len(PHASES) * len(SLOTS)


def slot(phase: str, name: str) -> int:
    return PHASES.index(phase) * len(SLOTS) + SLOTS.index(name)


def counts_dict(phases: Sequence[str], counts: Sequence[int]) -> dict[str, dict[str, int]]:
    """The API's ``counts``: ``{phase: {planned, published, failed, skipped}}``."""
    result: dict[str, dict[str, int]] = {}
    for phase in phases:
        total, published, failed, skipped = (counts[slot(phase, s)] for s in SLOTS)
        result[phase] = {
            "planned": total - published - failed - skipped,
            "published": published,
            "failed": failed,
            "skipped": skipped,
        }
    return result


def _change(pipeline_id: str, at: str) -> StatusChange:
    return StatusChange(
        pipeline_id, None, None, False, None, False, None, None, None, at, [0] * WIDTH
    )


class _Batch:
    def __init__(self, writer: PipelineStatusWriter) -> None:
        self.writer = writer
        self.rows: dict[str, StatusRow] = {}
        self.changes: dict[str, StatusChange] = {}
        self.errors: dict[tuple[str, str, str], ErrorRow] = {}
        self.updated: dict[str, str] = {}
        """Each pipeline's last event time: its ``updated_at``, set at ``flush`` (an entry's
        outcome then costs a count, not a new row or change)."""

    def change(self, event: ProjectedEvent, **fields: object) -> None:
        """Set columns of the pipeline's row, new in this batch or stored."""
        pid = event.originator_id
        self.updated[pid] = event.timestamp
        row = self.rows.get(pid)
        if row is not None:
            if "started_at" in fields and row.started_at is not None:
                del fields["started_at"]
            self.rows[pid] = row._replace(**fields)  # type: ignore[arg-type]
            return
        change = self.changes.get(pid) or _change(pid, event.timestamp)
        if "started_at" in fields and change.started_at is not None:
            del fields["started_at"]
        if "error" in fields:
            fields["set_error"] = True
        if "finished_at" in fields:
            fields["set_finished_at"] = True
        self.changes[pid] = change._replace(**fields)  # type: ignore[arg-type]

    def count(self, event: ProjectedEvent, index: int) -> None:
        pid = event.originator_id
        self.updated[pid] = event.timestamp
        row = self.rows.get(pid)
        if row is not None:
            row.counts[index] += 1
            return
        change = self.changes.get(pid)
        if change is None:
            change = self.changes[pid] = _change(pid, event.timestamp)
        change.counts_delta[index] += 1

    def flush(self) -> None:
        if self.rows or self.changes or self.errors:
            updated = self.updated
            self.writer.write(
                [r._replace(updated_at=updated.get(p, r.updated_at)) for p, r in self.rows.items()],
                [c._replace(updated_at=updated[p]) for p, c in self.changes.items()],
                list(self.errors.values()),
            )
        self.rows.clear()
        self.changes.clear()
        self.errors.clear()
        self.updated.clear()


class PipelineStatusProjection(Projection[PipelineStatusWriter]):
    name = "pipeline_status"
    events = frozenset(
        {
            "PipelinePlanned",
            "EntryPlanned",
            "PipelineRunRequested",
            "RetryRequested",
            "PipelineStale",
            "CancelRequested",
            "LeaseAcquired",
            "PhaseStarted",
            *OUTCOMES,
            "PipelineCompleted",
            "PipelineFailed",
            "PipelineCancelled",
        }
    )

    def apply(
        self,
        events: Sequence[ProjectedEvent],
        ctx: ProjectionContext,
        writer: PipelineStatusWriter,
    ) -> None:
        batch = _Batch(writer)
        for event in events:
            pid = event.originator_id
            data, name, at = event.data, event.name, event.timestamp
            if name == "PipelinePlanned":
                batch.rows[pid] = StatusRow(
                    pid,
                    data["workspace_id"],
                    data["user"],
                    "planned",
                    None,
                    [p["phase"] for p in data["phases"]],
                    [0] * WIDTH,
                    None,
                    False,
                    data["main_version"],
                    data["draft_version"],
                    at,
                    None,
                    None,
                    at,
                    data.get("trace_id"),
                )
            elif name == "EntryPlanned":
                batch.count(event, slot(data["phase"], "total"))
            elif name in OUTCOMES:
                status = OUTCOMES[name]
                batch.count(event, slot(data["phase"], status))
                if status != "published":
                    message = data.get("error", data.get("reason")) or ""
                    key = (pid, data["phase"], data["path"])
                    batch.errors[key] = ErrorRow(
                        pid,
                        data["phase"],
                        data["path"],
                        status,
                        message,
                        error_code(status, data),
                        data.get("details"),
                    )
            elif name == "RetryRequested":
                batch.flush()
                writer.reset(pid, [split_entry_key(k) for k in data["entries"]])
                batch.change(
                    event, state="running", error=None, finished_at=None, cancel_requested=False
                )
            elif name == "PipelineRunRequested":
                batch.change(event, state="running", error=None, finished_at=None)
            elif name == "PipelineStale":
                batch.change(event, state="stale", error=data["reason"], finished_at=at)
            elif name == "CancelRequested":
                batch.change(event, cancel_requested=True)
            elif name == "LeaseAcquired":
                batch.change(event, started_at=at)
            elif name == "PhaseStarted":
                batch.change(event, phase=data["phase"])
            elif name == "PipelineCompleted":
                batch.change(event, state=data["state"], finished_at=at, cancel_requested=False)
            elif name == "PipelineFailed":
                batch.change(
                    event,
                    state="failed",
                    error=data["error"],
                    finished_at=at,
                    cancel_requested=False,
                )
            elif name == "PipelineCancelled":
                batch.change(event, state="cancelled", finished_at=at, cancel_requested=False)
        batch.flush()


def error_code(status: str, data: JsonObject) -> str:
    """An entry error's code; events from before codes were recorded take the one they meant."""
    if status == "skipped":
        return "skipped_dependency"
    code = data.get("code")
    return code if isinstance(code, str) else "rejected"


PIPELINE_ERROR_CODES = {"stale": "stale_plan", "failed": "fatal"}
"""The code of a whole pipeline's error (no path), by the state it ended in."""


def pipeline_error(state: str, phase: str | None, message: str) -> JsonObject:
    """A whole pipeline's error (stale, a fatal connector error), as status lists it."""
    code = PIPELINE_ERROR_CODES.get(state)
    return {"path": None, "phase": phase, "message": message, "code": code, "details": None}
