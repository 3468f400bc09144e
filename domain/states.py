"""The states of a publish pipeline and which commands each allows."""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol


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


class _Planned(Protocol):
    state: PipelineState
    last_main_version: int
    draft_version: int


def stale_reason(plan: _Planned, main_version: int, draft_version: int | None) -> str | None:
    """Why running a plan now would publish something nobody reviewed, if it would.

    Main must not have moved since the plan (or since the last published
    entry, for a resumed run); the draft counts only while nothing of the
    plan has run (``draft_version`` None: don't check it).
    """
    if main_version != plan.last_main_version:
        return (
            f"main moved from version {plan.last_main_version} to "
            f"{main_version} since the plan was made: plan again"
        )
    if (
        plan.state == PipelineState.PLANNED
        and draft_version is not None
        and draft_version != plan.draft_version
    ):
        return (
            f"the draft moved from version {plan.draft_version} to "
            f"{draft_version} since the plan was made: plan again"
        )
    return None
