"""PipelineEntries: one row per path and phase of a pipeline, with its outcome.

``EntryDispatched`` is not a status of its own here: an entry is planned until
its outcome is recorded, as the API reports it.
"""

from __future__ import annotations

from collections.abc import Sequence

from application.projections.events import ProjectedEvent
from application.projections.ports import (
    EntryRow,
    EntryUpdate,
    PipelineEntriesWriter,
    Projection,
    ProjectionContext,
)

OUTCOMES = {"EntryPublished": "published", "EntryFailed": "failed", "EntrySkipped": "skipped"}


def split_entry_key(key: str) -> tuple[str, str]:
    """``create:books/a.json`` -> (``create``, ``books/a.json``)."""
    phase, _, path = key.partition(":")
    return phase, path


class _Batch:
    def __init__(self, writer: PipelineEntriesWriter) -> None:
        self.writer = writer
        self.rows: dict[tuple[str, str, str], list[str | int | None]] = {}
        """Entries planned in this batch: ``EntryRow`` fields, updated in place until ``flush``."""
        self.updates: dict[tuple[str, str, str], EntryUpdate] = {}

    def plan(self, pid: str, phase: str, path: str, seq: int, record_id: str | None) -> None:
        self.rows[(pid, phase, path)] = [pid, phase, path, seq, "planned", record_id, None]

    def update(self, change: EntryUpdate) -> None:
        key = (change.pipeline_id, change.phase, change.path)
        row = self.rows.get(key)
        if row is not None:
            row[4] = change.status
            if change.set_record_id:
                row[5] = change.record_id
            row[6] = change.error
            return
        previous = self.updates.get(key)
        if previous is not None and not change.set_record_id and previous.set_record_id:
            change = change._replace(record_id=previous.record_id, set_record_id=True)
        self.updates[key] = change

    def flush(self) -> None:
        if self.rows or self.updates:
            self.writer.write(
                [EntryRow._make(row) for row in self.rows.values()], list(self.updates.values())
            )
        self.rows.clear()
        self.updates.clear()


class PipelineEntriesProjection(Projection[PipelineEntriesWriter]):
    name = "pipeline_entries"
    events = frozenset({"EntryPlanned", *OUTCOMES, "RetryRequested"})

    def apply(
        self,
        events: Sequence[ProjectedEvent],
        ctx: ProjectionContext,
        writer: PipelineEntriesWriter,
    ) -> None:
        batch = _Batch(writer)
        for event in events:
            pipeline_id = event.originator_id
            data = event.data
            if event.name == "EntryPlanned":
                batch.plan(
                    pipeline_id,
                    data["phase"],
                    data["path"],
                    event.originator_version,
                    data["operation"].get("record_id"),
                )
            elif event.name in OUTCOMES:
                published = event.name == "EntryPublished"
                batch.update(
                    EntryUpdate(
                        pipeline_id,
                        data["phase"],
                        data["path"],
                        OUTCOMES[event.name],
                        data.get("record_id") if published else None,
                        published,
                        None if published else data.get("error", data.get("reason")),
                    )
                )
            elif event.name == "RetryRequested":
                # Which entries change depends on their stored status: apply in order.
                batch.flush()
                writer.reset(pipeline_id, [split_entry_key(k) for k in data["entries"]])
        batch.flush()
