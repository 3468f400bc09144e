"""The projector of the memory tables: a log's notifications, decoded, through every projection.

Decoding is the PostgreSQL runner's (``application.projections.events``, by
the event's name from its topic); only the events some projection reads are
decoded, and each projection takes those it reads from a batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

from eventsourcing.persistence import Notification

from application.projections import (
    DraftFilesProjection,
    FileIndexProjection,
    FileReferenceProjection,
    MainFilesProjection,
    PipelineEntriesProjection,
    PipelineStatusProjection,
    PullStatusProjection,
)
from application.projections.events import ProjectedEvent, decode, event_name
from application.projections.memory.writers import (
    MemoryContext,
    MemoryDraftFiles,
    MemoryFileIndex,
    MemoryFileReference,
    MemoryMainFiles,
    MemoryPipelineEntries,
    MemoryPipelineStatus,
    MemoryPullStatus,
    MemoryTables,
)
from application.projections.ports import Projection, ProjectionContext

_FILE_INDEX = FileIndexProjection()
_FILE_REFERENCE = FileReferenceProjection()
_MAIN_FILES = MainFilesProjection()
_DRAFT_FILES = DraftFilesProjection()
_PIPELINE_STATUS = PipelineStatusProjection()
_PIPELINE_ENTRIES = PipelineEntriesProjection()
_PULL_STATUS = PullStatusProjection()

READ_EVENTS: frozenset[str] = (
    _FILE_INDEX.events
    | _FILE_REFERENCE.events
    | _MAIN_FILES.events
    | _DRAFT_FILES.events
    | _PIPELINE_STATUS.events
    | _PIPELINE_ENTRIES.events
    | _PULL_STATUS.events
)
"""The events some projection reads: no other event needs decoding."""


class MemoryProjector:
    """Every projection with its writer over one set of tables.

    They all move together (in ``PROJECTION_NAMES`` order), so one position
    says what the tables hold.
    """

    def __init__(self, tables: MemoryTables) -> None:
        self.tables = tables
        self.ctx = MemoryContext(tables)
        self.file_index = MemoryFileIndex(tables)
        self.file_reference = MemoryFileReference(tables)
        self.main_files = MemoryMainFiles(tables)
        self.draft_files = MemoryDraftFiles(tables)
        self.pipeline_status = MemoryPipelineStatus(tables)
        self.pipeline_entries = MemoryPipelineEntries(tables)
        self.pull_status = MemoryPullStatus(tables)

    def apply(self, events: Sequence[ProjectedEvent]) -> None:
        """Project one batch, in notification order; each projection takes the events it reads."""
        _apply(_FILE_INDEX, self.file_index, events, self.ctx)
        _apply(_FILE_REFERENCE, self.file_reference, events, self.ctx)
        _apply(_MAIN_FILES, self.main_files, events, self.ctx)
        _apply(_DRAFT_FILES, self.draft_files, events, self.ctx)
        _apply(_PIPELINE_STATUS, self.pipeline_status, events, self.ctx)
        _apply(_PIPELINE_ENTRIES, self.pipeline_entries, events, self.ctx)
        _apply(_PULL_STATUS, self.pull_status, events, self.ctx)


W = TypeVar("W")


def _apply(
    projection: Projection[W], writer: W, events: Sequence[ProjectedEvent], ctx: ProjectionContext
) -> None:
    read = [e for e in events if e.name in projection.events]
    if read:
        projection.apply(read, ctx, writer)


def projected_events(notifications: Iterable[Notification]) -> list[ProjectedEvent]:
    """The notifications some projection reads, decoded as the PostgreSQL runner decodes rows."""
    events = []
    for n in notifications:
        name = event_name(n.topic)
        if name in READ_EVENTS:
            events.append(decode(n.id, str(n.originator_id), n.originator_version, name, n.state))
    return events
