"""PullStatus: a pull's scope, state, counts, error and timings, for ``GET /pulls/{id}``.

A pull is a handful of events (one per page), but a rebuild meets them by the
thousand, so a batch still coalesces them into one new row or one change per
pull. The pages' counts add up; ``PullCompleted`` then carries the totals
themselves, which win: a page that a resumed pull processed again must not
count twice in the final figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from application.projections.events import ProjectedEvent
from application.projections.ports import (
    Projection,
    ProjectionContext,
    PullStatusChange,
    PullStatusRow,
    PullStatusWriter,
)

COUNTS = ("created", "updated", "unchanged", "deleted")


def counts_of(data: Any) -> list[int]:
    """An event's ``counts`` in ``COUNTS`` order; what it does not name counts 0."""
    found = data if isinstance(data, dict) else {}
    return [int(found.get(name, 0)) for name in COUNTS]


def status_of(row: PullStatusRow) -> dict[str, Any]:
    """The API's form of a pull's row (``updated_at`` is the projection's, not the API's)."""
    body = row._asdict()
    del body["updated_at"]
    return body


class _Batch:
    def __init__(self) -> None:
        self.rows: dict[str, PullStatusRow] = {}
        self.changes: dict[str, PullStatusChange] = {}

    def change(
        self,
        event: ProjectedEvent,
        counts: list[int] | None = None,
        totals: bool = False,
        **fields: Any,
    ) -> None:
        """Move a pull's row, new in this batch or stored; ``counts`` add up unless ``totals``."""
        pid, at = event.originator_id, event.timestamp
        row = self.rows.get(pid)
        if row is not None:
            if counts is not None:
                base = [0] * len(COUNTS) if totals else [getattr(row, n) for n in COUNTS]
                fields.update(
                    zip(COUNTS, [a + b for a, b in zip(base, counts, strict=True)], strict=True)
                )
            self.rows[pid] = row._replace(updated_at=at, **fields)
            return
        change = self.changes.get(pid) or PullStatusChange(
            pid, None, [0] * len(COUNTS), False, False, None, False, None, at
        )
        if counts is not None:
            base = [0] * len(COUNTS) if totals else change.counts
            fields["counts"] = [a + b for a, b in zip(base, counts, strict=True)]
            fields["totals"] = change.totals or totals
        if "error" in fields:
            fields["set_error"] = True
        if "finished_at" in fields:
            fields["set_finished_at"] = True
        self.changes[pid] = change._replace(updated_at=at, **fields)


class PullStatusProjection(Projection[PullStatusWriter]):
    name = "pull_status"
    events = frozenset({"PullStarted", "PullPageProcessed", "PullCompleted", "PullFailed"})

    def apply(
        self,
        events: Sequence[ProjectedEvent],
        ctx: ProjectionContext,
        writer: PullStatusWriter,
    ) -> None:
        batch = _Batch()
        for event in events:
            data, name, at = event.data, event.name, event.timestamp
            if name == "PullStarted":
                scope = data.get("scope") or {"folders": data["folders"]}
                batch.rows[event.originator_id] = PullStatusRow(
                    event.originator_id,
                    data["workspace_id"],
                    scope,
                    "running",
                    0,
                    0,
                    0,
                    0,
                    None,
                    at,
                    None,
                    at,
                )
            elif name == "PullPageProcessed":
                batch.change(event, counts_of(data.get("counts")))
            elif name == "PullCompleted":
                totals = data.get("counts")
                if isinstance(totals, dict):
                    batch.change(event, counts_of(totals), True, state="completed", finished_at=at)
                else:
                    batch.change(event, state="completed", finished_at=at)
            elif name == "PullFailed":
                batch.change(event, state="failed", error=data.get("error"), finished_at=at)
        if batch.rows or batch.changes:
            writer.write(list(batch.rows.values()), list(batch.changes.values()))
