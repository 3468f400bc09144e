"""The states of a publish pipeline and which commands each allows."""

from __future__ import annotations

from enum import StrEnum


class PipelineState(StrEnum):
    PLANNED = "planned"
    RUNNING = "running"
    COMPLETED = "completed"
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    FAILED = "failed"
    """Stopped by a fatal error; resumable."""
    CANCELLED = "cancelled"
    STALE = "stale"
    """Refused before any call: main or the draft moved since the plan was made."""


TERMINAL_STATES = frozenset(
    {
        PipelineState.COMPLETED,
        PipelineState.COMPLETED_WITH_ERRORS,
        PipelineState.FAILED,
        PipelineState.CANCELLED,
        PipelineState.STALE,
    }
)

# command -> states it is legal in
TRANSITIONS: dict[str, frozenset[PipelineState]] = {
    "run": frozenset({PipelineState.PLANNED, PipelineState.FAILED}),
    "retry": frozenset(
        {PipelineState.COMPLETED_WITH_ERRORS, PipelineState.FAILED, PipelineState.CANCELLED}
    ),
    "mark_stale": frozenset({PipelineState.PLANNED}),
    "cancel": frozenset({PipelineState.PLANNED, PipelineState.RUNNING}),
    "claim": frozenset({PipelineState.RUNNING}),
    "work": frozenset({PipelineState.RUNNING}),
}
