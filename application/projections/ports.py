"""Ports of the projections: what the pure projection logic writes to and asks of.

Each projection turns a *batch* of events into a few calls on its writer, with
the batch's changes already coalesced per key (the last write of a key wins),
so that an adapter can apply every call as one set-based statement. A call's
arguments are ordered the way the adapter must apply them (removals before
insertions); calls themselves are applied in the order they are made.

Rows are named tuples: cheap to build by the hundred thousand during a rebuild,
and directly usable as SQL parameters.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from typing import ClassVar, Generic, NamedTuple, TypeAlias, TypeVar

from application.projections.events import Content, ProjectedEvent
from domain.json_types import JsonObject, JsonValue

# --- rows -------------------------------------------------------------------


class MainFileRow(NamedTuple):
    workspace: str
    path: str
    folder: str
    record_id: str | None
    content: Content


class DraftFileRow(NamedTuple):
    workspace: str
    user: str
    path: str
    content: Content | None
    """``None``: the draft deletes this main file."""


class FileIndexRow(NamedTuple):
    workspace: str
    folder: str
    record_id: str
    filename: str
    last_seen_at: str


FileKey: TypeAlias = tuple[str, str, str]
"""A FileIndex key: ``(workspace, folder, record_id)`` or ``(workspace, folder, filename)``."""


class SeenRow(NamedTuple):
    workspace: str
    folder: str
    record_id: str
    last_seen_at: str


class ReferenceRow(NamedTuple):
    """One pointer out of a file, as the file wrote it.

    ``pointer`` says which target column the file itself carries (``filename``
    for an @-reference, ``record_id`` for a resolved id); the adapter fills the
    other one from FileIndex, now and whenever FileIndex learns it later.
    """

    workspace: str
    branch: str
    source_path: str
    target_folder: str
    target_filename: str | None
    target_record_id: str | None
    pointer: str


class SourceKey(NamedTuple):
    workspace: str
    branch: str
    source_path: str


class EntryRow(NamedTuple):
    pipeline_id: str
    phase: str
    path: str
    seq: int
    """The planning order (the EntryPlanned event's version), for listing."""
    status: str
    record_id: str | None
    error: str | None


class EntryUpdate(NamedTuple):
    pipeline_id: str
    phase: str
    path: str
    status: str
    record_id: str | None
    set_record_id: bool
    error: str | None


class StatusRow(NamedTuple):
    pipeline_id: str
    workspace: str
    user: str
    state: str
    phase: str | None
    phases: list[str]
    counts: list[int]
    """Per phase of ``PHASES``: total, published, failed, skipped (planned = the rest)."""
    error: str | None
    cancel_requested: bool
    main_version: int
    draft_version: int
    created_at: str
    started_at: str | None
    finished_at: str | None
    updated_at: str
    trace_id: str | None = None
    """The trace of the request that planned the pipeline (its run's log lines carry it)."""


class StatusChange(NamedTuple):
    """Changes to an existing status row; ``None`` (or a false ``set_*``) leaves a column."""

    pipeline_id: str
    state: str | None
    phase: str | None
    set_error: bool
    error: str | None
    set_finished_at: bool
    finished_at: str | None
    cancel_requested: bool | None
    started_at: str | None
    """Only taken while the row has no ``started_at`` yet (the first lease)."""
    updated_at: str
    counts_delta: list[int]


class ErrorRow(NamedTuple):
    pipeline_id: str
    phase: str
    path: str
    status: str
    message: str
    code: str
    """API.md's entry error code: ``rejected``, ``changed_upstream``, ``skipped_dependency``..."""
    details: JsonValue


class PullStatusRow(NamedTuple):
    pull_id: str
    workspace: str
    scope: JsonObject
    state: str
    created: int
    updated: int
    unchanged: int
    deleted: int
    error: str | None
    started_at: str
    finished_at: str | None
    updated_at: str


class PullStatusChange(NamedTuple):
    """Changes to an existing pull's row; ``None`` (or a false ``set_*``) leaves a column."""

    pull_id: str
    state: str | None
    counts: list[int]
    """``created``, ``updated``, ``unchanged``, ``deleted``: added, or with ``totals`` set."""
    totals: bool
    set_error: bool
    error: str | None
    set_finished_at: bool
    finished_at: str | None
    updated_at: str


# --- the shared context -------------------------------------------------------


class ProjectionContext(ABC):
    """Which workspace or draft an aggregate is: facts that never change once recorded.

    Later events of a Workspace or Draft carry only the originator id, so each
    projection that needs the names records them when it passes the creation
    event. Being immutable, these facts are safe to share between projections
    at different positions.
    """

    @abstractmethod
    def workspace_of(self, originator_id: str) -> str | None: ...

    @abstractmethod
    def draft_of(self, originator_id: str) -> tuple[str, str] | None: ...

    @abstractmethod
    def remember_workspace(self, originator_id: str, workspace_id: str) -> None: ...

    @abstractmethod
    def remember_draft(self, originator_id: str, workspace_id: str, user: str) -> None: ...

    def note(self, event: ProjectedEvent) -> None:
        """Remember the names carried by a creation event."""
        if event.name == "WorkspaceCreated":
            self.remember_workspace(event.originator_id, event.data["workspace_id"])
        elif event.name == "DraftStarted":
            self.remember_draft(event.originator_id, event.data["workspace_id"], event.data["user"])


# --- writers ------------------------------------------------------------------


class MainFilesWriter(ABC):
    @abstractmethod
    def write(self, removed: Sequence[tuple[str, str]], rows: Sequence[MainFileRow]) -> None:
        """Remove ``(workspace, path)`` keys, then upsert rows (the two never share a key)."""


class DraftFilesWriter(ABC):
    @abstractmethod
    def write(
        self,
        discarded: Sequence[tuple[str, str]],
        removed: Sequence[tuple[str, str, str]],
        rows: Sequence[DraftFileRow],
    ) -> None:
        """Drop whole drafts ``(workspace, user)``, then keys, then upsert rows."""


class FileIndexWriter(ABC):
    @abstractmethod
    def write(
        self,
        by_record: Collection[FileKey],
        by_filename: Collection[FileKey],
        rows: Sequence[FileIndexRow],
        seen: Sequence[SeenRow],
    ) -> None:
        """Remove every row holding a key of either kind, insert rows, then touch ``last_seen_at``.

        Both keys of every row of ``rows`` are among the removed ones, so the
        insert never conflicts. The adapter also re-resolves the references
        that point at any key touched here (FileReference's derived column).
        """


class FileReferenceWriter(ABC):
    @abstractmethod
    def load_schema(self, workspace: str, folder: str) -> JsonObject | None:
        """The folder's schema as this projection last recorded it."""

    @abstractmethod
    def write(
        self,
        schemas: Sequence[tuple[str, str, JsonObject]],
        cleared_branches: Sequence[tuple[str, str]],
        replaced: Sequence[SourceKey],
        rows: Sequence[ReferenceRow],
    ) -> None:
        """Save schemas, drop branches, drop the references of sources, insert rows.

        The adapter fills each new row's other target column from FileIndex.
        """


class PipelineEntriesWriter(ABC):
    @abstractmethod
    def write(self, rows: Sequence[EntryRow], updates: Sequence[EntryUpdate]) -> None:
        """Insert new entries, then update existing ones (one update per key)."""

    @abstractmethod
    def reset(self, pipeline_id: str, keys: Sequence[tuple[str, str]]) -> None:
        """Retry: entries ``(phase, path)`` that failed or were skipped are planned again."""


class PipelineStatusWriter(ABC):
    @abstractmethod
    def write(
        self,
        rows: Sequence[StatusRow],
        changes: Sequence[StatusChange],
        errors: Sequence[ErrorRow],
    ) -> None:
        """Insert new pipelines, apply changes, upsert entry errors."""

    @abstractmethod
    def reset(self, pipeline_id: str, keys: Sequence[tuple[str, str]]) -> None:
        """Retry: drop the errors of ``(phase, path)`` and move their counts back to planned."""


class PullStatusWriter(ABC):
    @abstractmethod
    def write(self, rows: Sequence[PullStatusRow], changes: Sequence[PullStatusChange]) -> None:
        """Insert new pulls (a stored one is left as it is), then apply changes (one per pull)."""


W = TypeVar("W")


class Projection(ABC, Generic[W]):
    """A pure projection: a batch of events in, coalesced writer calls out."""

    name: ClassVar[str]
    events: ClassVar[frozenset[str]]
    """The event names it reads; the runner decodes nothing else."""

    @abstractmethod
    def apply(self, events: Sequence[ProjectedEvent], ctx: ProjectionContext, writer: W) -> None:
        """Project a batch, in notification order, through ``writer``."""
