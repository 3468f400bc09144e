"""How a phase's open entries group into external calls.

An entry is one call, except deletes: the service deletes up to a page of
records of one folder in one call, so deletes of one planned page share a
call. A call whose intent was recorded (``dispatched``) keeps its idempotency
key and its grouping, so resuming a run re-sends exactly the calls that may
have gone out, and the service recognises them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from domain.entries import EntryStatus, PipelineEntry
from domain.ids import idempotency_key
from domain.json_types import JsonObject
from domain.plan import EntryKey, Phase


@dataclass
class Call:
    """One external call: a single entry, or a page of deletes."""

    keys: list[EntryKey]
    idempotency_key: str
    operation: JsonObject


def blocked_by(call: Call, entries: Mapping[EntryKey, PipelineEntry]) -> str | None:
    """Why a call must not go out: an entry it depends on failed or was skipped."""
    for key in call.keys:
        for dependency in entries[key].depends_on:
            status = entries[dependency].status
            if status == EntryStatus.FAILED:
                return f"depends on {dependency}, which failed"
            if status == EntryStatus.SKIPPED:
                return f"depends on {dependency}, which was skipped"
    return None


def calls_per_phase(
    pipeline_id: str, entries: Iterable[PipelineEntry], delete_page_size: int
) -> dict[Phase, int]:
    """The calls each phase of a plan makes when nothing fails (its ``estimated_calls``)."""
    by_phase: dict[Phase, list[PipelineEntry]] = {}
    for entry in entries:
        by_phase.setdefault(entry.phase, []).append(entry)
    return {
        phase: len(group_calls(pipeline_id, 0, phase, phase_entries, delete_page_size))
        for phase, phase_entries in by_phase.items()
    }


def group_calls(
    pipeline_id: str,
    attempt: int,
    phase: Phase,
    entries: Iterable[PipelineEntry],
    delete_page_size: int,
) -> list[Call]:
    """The open entries as calls: re-sent intents first (same key), then new ones.

    ``attempt`` (the pipeline's retry count) is part of each new key, so a
    retried entry is a new call to the service, not a replay of the failed one.
    """
    resend: dict[str, Call] = {}
    fresh: list[Call] = []
    pages: dict[tuple[str, int], Call] = {}
    for entry in sorted(entries, key=lambda e: e.path):
        if not entry.is_open:
            continue
        op = entry.operation
        if entry.status == EntryStatus.DISPATCHED:
            assert entry.idempotency_key is not None
            call = resend.setdefault(entry.idempotency_key, Call([], entry.idempotency_key, op))
            call.keys.append(entry.key)
            continue
        new_key = idempotency_key(pipeline_id, phase, f"{entry.path}#{attempt}")
        if op["type"] == "delete":
            page = pages.get((op["folder"], op["page"]))
            if page is None or len(page.keys) >= delete_page_size:
                page = Call([], new_key, op)
                pages[(op["folder"], op["page"])] = page
                fresh.append(page)
            page.keys.append(entry.key)
        else:
            fresh.append(Call([entry.key], new_key, op))
    return list(resend.values()) + fresh
