"""How a phase's open entries group into external calls: waves, then batches.

A user waits for requests, not for CPU: a service that allows one or two
requests per second makes a publish of 1,000 records cost minutes if each
record is a request, seconds if a request carries a hundred. So:

- within a phase, an entry goes out in the first **wave** after the entries
  of the same phase it depends on (a create after the creates of the records
  it points at); other phases' dependencies ran in earlier phases. An entry's
  wave is one past its deepest dependency in the phase (``waves``);
- within a wave, entries of one folder and kind go out in **batches** of up
  to the connector's limit for that kind (``BatchLimits``), in path order;
  deletes keep the bulk-delete page the planner gave them (records deleted
  together may point at each other), cut to the limit.

A call whose intent was recorded (``dispatched``) keeps its idempotency key
and its grouping, so resuming a run re-sends exactly the calls that may have
gone out, and the service recognises them. Entries with no recorded intent
were never sent, so they may be grouped afresh.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from domain.entries import EntryStatus, PipelineEntry
from domain.ids import idempotency_key
from domain.json_types import JsonObject
from domain.plan import EntryKey, Phase


@dataclass(frozen=True)
class BatchLimits:
    """The most records a service takes in one request, per kind of request (its facts)."""

    create: int = 1
    update: int = 1
    delete: int = 100
    requests_per_delete: int = 1
    """Requests one delete batch takes (a live Webflow delete: off the site, then the CMS)."""

    def __post_init__(self) -> None:
        if min(self.create, self.update, self.delete, self.requests_per_delete) < 1:
            raise ValueError("batch limits must be at least 1")

    def of(self, kind: str) -> int:
        return {"create": self.create, "update": self.update, "delete": self.delete}[kind]


@dataclass
class Call:
    """One external request: a batch of entries of one folder and kind."""

    keys: list[EntryKey]
    idempotency_key: str
    kind: str
    """``create``, ``update`` or ``delete`` (the operations' ``type``)."""
    folder: str
    resent: bool = False
    """Its intent was recorded before this grouping: it may have reached the service."""


class _Planned(Protocol):
    """What waves are computed from: a plan's entries or a pipeline's."""

    @property
    def key(self) -> EntryKey: ...

    @property
    def phase(self) -> Phase: ...

    @property
    def depends_on(self) -> Sequence[EntryKey]: ...


def waves(entries: Iterable[_Planned]) -> dict[EntryKey, int]:
    """Each entry's wave within its phase: 0 with no dependency in the phase, else one past them.

    Dependencies never form a cycle (the planner breaks cycles by deferring
    fields to the backfill phase); one that did would raise ``ValueError``.
    """
    by_key = {entry.key: entry for entry in entries}
    wave: dict[EntryKey, int] = {}
    for start in by_key:
        if start in wave:
            continue
        # Iterative depth-first walk: dependency chains may be thousands long.
        stack: list[tuple[EntryKey, bool]] = [(start, False)]
        on_path: set[EntryKey] = set()
        while stack:
            key, expanded = stack.pop()
            entry = by_key[key]
            same_phase = [
                d for d in entry.depends_on if d in by_key and by_key[d].phase == entry.phase
            ]
            if expanded:
                on_path.discard(key)
                wave[key] = 1 + max((wave[d] for d in same_phase), default=-1)
                continue
            if key in wave:
                continue
            if key in on_path:
                raise ValueError(f"entries depend on each other in a cycle through {key}")
            on_path.add(key)
            stack.append((key, True))
            stack.extend((d, False) for d in same_phase if d not in wave)
    return wave


def blocked_by(
    call: Call, entries: Mapping[EntryKey, PipelineEntry]
) -> tuple[list[tuple[EntryKey, str]], Call | None]:
    """Which entries of a call must not go out (an entry they depend on failed or was
    skipped), with why, and the call that is left to send (None when nothing is).

    A delete page is all or nothing: records deleted together may point at
    each other, so the service would refuse the page without the skipped one.
    """
    blocked = [
        (key, reason)
        for key in call.keys
        if (reason := entry_blocked_by(entries[key], entries)) is not None
    ]
    if not blocked:
        return [], call
    if call.kind == "delete":
        reason = blocked[0][1]
        return [(key, dict(blocked).get(key, reason)) for key in call.keys], None
    skipped = {key for key, _ in blocked}
    left = [key for key in call.keys if key not in skipped]
    if not left:
        return blocked, None
    return blocked, Call(left, call.idempotency_key, call.kind, call.folder, call.resent)


def entry_blocked_by(entry: PipelineEntry, entries: Mapping[EntryKey, PipelineEntry]) -> str | None:
    for dependency in entry.depends_on:
        status = entries[dependency].status
        if status == EntryStatus.FAILED:
            return f"depends on {dependency}, which failed"
        if status == EntryStatus.SKIPPED:
            return f"depends on {dependency}, which was skipped"
    return None


def calls_per_phase(
    pipeline_id: str, entries: Iterable[PipelineEntry], limits: BatchLimits
) -> dict[Phase, int]:
    """The calls each phase of a plan makes when nothing fails (its ``calls``, API.md §4)."""
    by_phase: dict[Phase, list[PipelineEntry]] = {}
    for entry in entries:
        by_phase.setdefault(entry.phase, []).append(entry)
    counts = {
        phase: sum(len(wave) for wave in group_calls(pipeline_id, 0, phase, group, limits))
        for phase, group in by_phase.items()
    }
    if Phase.DELETE in counts:
        counts[Phase.DELETE] *= limits.requests_per_delete
    return counts


def group_calls(
    pipeline_id: str,
    attempt: int,
    phase: Phase,
    entries: Iterable[PipelineEntry],
    limits: BatchLimits,
) -> list[list[Call]]:
    """The phase's open entries as calls, wave by wave: re-sent intents first, then new batches.

    ``entries``: all of the phase's entries (closed ones fix the waves of the
    rest). ``attempt`` (the pipeline's retry count) is part of each new key,
    so a retried entry is a new call to the service, not a replay of the
    failed one.
    """
    phase_entries = [e for e in entries if e.phase == phase]
    wave_of = waves(phase_entries)
    by_wave: dict[int, list[PipelineEntry]] = {}
    for entry in phase_entries:
        if entry.is_open:
            by_wave.setdefault(wave_of[entry.key], []).append(entry)
    return [
        _batches(pipeline_id, attempt, phase, by_wave[wave], limits) for wave in sorted(by_wave)
    ]


def _batches(
    pipeline_id: str,
    attempt: int,
    phase: Phase,
    entries: list[PipelineEntry],
    limits: BatchLimits,
) -> list[Call]:
    resend: dict[str, Call] = {}
    fresh: list[Call] = []
    open_batches: dict[tuple[str, str, int], Call] = {}
    for entry in sorted(entries, key=lambda e: e.path):
        op = entry.operation
        kind, folder = str(op["type"]), str(op["folder"])
        if entry.status == EntryStatus.DISPATCHED:
            key = entry.idempotency_key
            assert key is not None
            resend.setdefault(key, Call([], key, kind, folder, resent=True)).keys.append(entry.key)
            continue
        group = (kind, folder, _page(op))
        batch = open_batches.get(group)
        if batch is None or len(batch.keys) >= limits.of(kind):
            new_key = idempotency_key(pipeline_id, phase, f"{entry.path}#{attempt}")
            batch = open_batches[group] = Call([], new_key, kind, folder)
            fresh.append(batch)
        batch.keys.append(entry.key)
    return list(resend.values()) + fresh


def _page(operation: JsonObject) -> int:
    page = operation.get("page", 0)
    return page if isinstance(page, int) else 0
