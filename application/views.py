"""The read port: what the application asks of the projections' tables.

Implemented for PostgreSQL by ``infrastructure.postgres.projections.views.PostgresViews``.
Lookups take many keys at once where a use case has many (planning a 20,000
file draft must not make 20,000 round trips).

Projections are eventually consistent: a command that must read its own
writes waits with ``wait_for_position`` for the notification id its save
produced.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any

from domain.json_types import JsonObject

FileIndexEntry = dict[str, Any]
"""``{"folder", "record_id", "filename", "last_seen_at"}``"""

ReferenceEntry = dict[str, Any]
"""``{"branch", "source_path", "target_folder", "target_filename", "target_record_id"}``"""

PipelineStatus = dict[str, Any]
"""API.md section 5: pipeline_id, workspace, user, state, phase, counts, errors,
created_at, started_at, finished_at, main_version, draft_version, cancel_requested."""

EntryCursor = tuple[int, int]
"""Where a page of a pipeline's entries ends: (the phase's place in run order, plan order)."""

PullStatus = dict[str, Any]
"""API.md section 2: pull_id, workspace, scope, state, created, updated, unchanged, deleted,
error, started_at, finished_at."""


class Views(ABC):
    # --- main and drafts -------------------------------------------------------
    @abstractmethod
    def main_contents(self, workspace: str, paths: Iterable[str]) -> dict[str, JsonObject]:
        """Content of those of ``paths`` that are on main."""

    def main_file(self, workspace: str, path: str) -> JsonObject | None:
        return self.main_contents(workspace, [path]).get(path)

    @abstractmethod
    def main_paths_exist(self, workspace: str, paths: Iterable[str]) -> set[str]: ...

    @abstractmethod
    def main_folder_index(self, workspace: str, folder: str) -> dict[str, tuple[str, JsonObject]]:
        """``{record_id: (filename, content)}`` of a folder's main files (pull diffing)."""

    @abstractmethod
    def draft_file(self, workspace: str, user: str, path: str) -> tuple[bool, JsonObject | None]:
        """``(in the draft, content)``; content ``None`` with True: the draft deletes it."""

    @abstractmethod
    def draft_files(self, workspace: str, user: str) -> dict[str, JsonObject | None]:
        """Every change of the draft: path -> content (``None`` = deleted)."""

    @abstractmethod
    def draft_users(self, workspace: str) -> list[tuple[str, int]]:
        """``[(user, changes)]`` of the workspace's drafts that change anything, by user.

        A change is a draft file that adds or modifies a file, or deletes one on main.
        """

    # --- workspaces ----------------------------------------------------------------
    @abstractmethod
    def workspace_ids(self) -> list[str]:
        """Every workspace created, in id order."""

    # --- FileIndex and FileReference ---------------------------------------------
    @abstractmethod
    def record_ids(
        self, workspace: str, files: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        """``{(folder, filename): record_id}`` for the files FileIndex knows."""

    @abstractmethod
    def file_index_by_record(
        self, workspace: str, folder: str, record_id: str
    ) -> FileIndexEntry | None: ...

    @abstractmethod
    def file_index_by_filename(
        self, workspace: str, folder: str, filename: str
    ) -> FileIndexEntry | None: ...

    @abstractmethod
    def inbound_references(
        self,
        workspace: str,
        targets: Iterable[tuple[str, str, str | None]],
        branches: Sequence[str],
    ) -> list[str]:
        """Source paths on ``branches`` pointing at any target ``(folder, filename, record_id)``."""

    @abstractmethod
    def references(
        self,
        workspace: str,
        target_folder: str,
        target_filename: str | None = None,
        target_record_id: str | None = None,
    ) -> list[ReferenceEntry]: ...

    # --- pipelines -------------------------------------------------------------
    @abstractmethod
    def pipeline_status(self, pipeline_id: str) -> PipelineStatus | None: ...

    @abstractmethod
    def list_pipelines(
        self,
        workspace: str | None = None,
        user: str | None = None,
        state: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[PipelineStatus]:
        """Newest first; ``before`` is a pipeline id: only pipelines created before it.

        A ``before`` outside ``workspace`` is as unknown as an absent one (an
        empty list): its creation time is another tenant's to know.
        """

    @abstractmethod
    def pipeline_entries(
        self, pipeline_id: str, phase: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        """``[{"path", "phase", "status", "record_id", "error"}]`` in phase, then plan order."""

    @abstractmethod
    def pipeline_entries_page(
        self,
        pipeline_id: str,
        phase: str | None,
        status: str | None,
        after: EntryCursor | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` of ``pipeline_entries`` past ``after``, each with its ``cursor``.

        A cursor is ``(phase's place in run order, plan order)``: a page is one
        index range, however many entries the pipeline holds.
        """

    @abstractmethod
    def runnable_pipelines(self, limit: int = 100, after: str | None = None) -> list[str]:
        """Running pipelines, oldest first; the worker checks their lease itself.

        ``after``: only those that come after that pipeline in this order, so a
        worker can page through all of them (none waits behind the first page).
        """

    # --- pulls -----------------------------------------------------------------
    @abstractmethod
    def pull_status(self, pull_id: str) -> PullStatus | None: ...

    @abstractmethod
    def list_pulls(
        self, workspace: str, state: str | None = None, limit: int = 50
    ) -> list[PullStatus]:
        """Newest first (by ``started_at``)."""

    @abstractmethod
    def runnable_pulls(self, limit: int = 100, after: str | None = None) -> list[str]:
        """Running pulls, oldest first (``after`` as for pipelines); the worker checks leases."""

    # --- read-your-writes ----------------------------------------------------------
    @abstractmethod
    def position(self, projection_name: str) -> int: ...

    @abstractmethod
    def wait_for_position(
        self, position: int, timeout: float, names: Sequence[str] | None = None
    ) -> bool:
        """Block until every projection (or ``names``) has passed ``position``; False on timeout."""
