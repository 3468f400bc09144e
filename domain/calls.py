"""How a phase's open entries group into external calls.

An entry is one call, except deletes: the service deletes up to a page of
records of one folder in one call, so deletes of one planned page share a
call. A call whose intent was recorded (``dispatched``) keeps its idempotency
key and its grouping, so resuming a run re-sends exactly the calls that may
have gone out, and the service recognises them.
"""

from __future__ import annotations

from collections.abc import Iterable
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
