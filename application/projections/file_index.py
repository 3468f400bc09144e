"""FileIndex: ``(workspace, folder, record_id) <-> filename``, with ``last_seen_at``.

Main's content events carry both sides of the pair, so the index follows
``MainChanged`` (a file with a record id is indexed, a removed file leaves)
and ``RecordsSeen`` (a complete pull saw an unchanged record).

Both keys are unique, so one change can displace another row (a record that
is renamed, a filename taken over by another record). The batch is replayed
on an in-memory overlay that knows only the keys it touched; the adapter then
removes every stored row holding a touched key and inserts the overlay's
surviving rows, which gives the same table as applying the events one by one.
"""

from __future__ import annotations

from collections.abc import Sequence

from application.projections.events import FileChange, ProjectedEvent
from application.projections.ports import (
    FileIndexRow,
    FileIndexWriter,
    FileKey,
    Projection,
    ProjectionContext,
    SeenRow,
)


class _Overlay:
    """The touched keys: each record's ``(filename, last_seen_at)`` (``None``: no row)
    and each filename's record (rows are built at ``flush``, for the survivors only)."""

    def __init__(self) -> None:
        self.by_record: dict[FileKey, tuple[str, str] | None] = {}
        self.by_filename: dict[FileKey, str | None] = {}
        self.seen: dict[FileKey, str] = {}

    def upsert(self, ws: str, folder: str, record_id: str, filename: str, at: str) -> None:
        rkey = (ws, folder, record_id)
        previous = self.by_record.get(rkey)
        if previous is not None:
            if previous[0] == filename:  # (the common case: the same file changed again)
                self.by_record[rkey] = (filename, at)
                if self.seen:
                    self.seen.pop(rkey, None)
                return
            self.by_filename[(ws, folder, previous[0])] = None
        fkey = (ws, folder, filename)
        holder = self.by_filename.get(fkey)
        if holder is not None and holder != record_id:
            self.by_record[(ws, folder, holder)] = None
        self.by_record[rkey] = (filename, at)
        self.by_filename[fkey] = record_id
        if self.seen:
            self.seen.pop(rkey, None)

    def remove_filename(self, ws: str, folder: str, filename: str) -> None:
        holder = self.by_filename.get((ws, folder, filename))
        if holder is not None:
            self.by_record[(ws, folder, holder)] = None
        self.by_filename[(ws, folder, filename)] = None

    def remove_record(self, ws: str, folder: str, record_id: str) -> None:
        previous = self.by_record.get((ws, folder, record_id))
        if previous is not None:
            self.by_filename[(ws, folder, previous[0])] = None
        self.by_record[(ws, folder, record_id)] = None
        self.seen.pop((ws, folder, record_id), None)

    def touch(self, ws: str, folder: str, record_id: str, at: str) -> None:
        rkey = (ws, folder, record_id)
        if rkey in self.by_record:
            row = self.by_record[rkey]
            if row is not None:
                self.by_record[rkey] = (row[0], at)
        else:
            self.seen[rkey] = at

    def flush(self, writer: FileIndexWriter) -> None:
        rows = [
            FileIndexRow(ws, folder, rid, *row)
            for (ws, folder, rid), row in self.by_record.items()
            if row is not None
        ]
        seen = [SeenRow(ws, folder, rid, at) for (ws, folder, rid), at in self.seen.items()]
        if self.by_record or self.by_filename or seen:
            writer.write(self.by_record.keys(), self.by_filename.keys(), rows, seen)


class FileIndexProjection(Projection[FileIndexWriter]):
    name = "file_index"
    events = frozenset({"WorkspaceCreated", "MainChanged", "RecordsSeen"})

    def apply(
        self, events: Sequence[ProjectedEvent], ctx: ProjectionContext, writer: FileIndexWriter
    ) -> None:
        overlay = _Overlay()
        for event in events:
            if event.name == "WorkspaceCreated":
                ctx.note(event)
                continue
            ws = ctx.workspace_of(event.originator_id)
            if ws is None:
                continue
            if event.name == "MainChanged":
                change: FileChange
                for change in event.data["changes"]:
                    folder, _, filename = change.path.rpartition("/")
                    record_id = change.record_id
                    if change.content is not None and record_id:
                        overlay.upsert(ws, folder, record_id, filename, event.timestamp)
                    else:
                        overlay.remove_filename(ws, folder, filename)
                        if record_id:
                            overlay.remove_record(ws, folder, record_id)
            elif event.name == "RecordsSeen":
                folder = event.data["folder"]
                for record_id in event.data["record_ids"]:
                    overlay.touch(ws, folder, record_id, event.timestamp)
        overlay.flush(writer)
