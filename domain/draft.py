"""The Draft aggregate: one user's pending changes on top of main.

A change is the file's new content, or ``None`` for a main file deleted in the
draft. Whether a written file is *added* or *modified* depends on main at the
time of asking, so the draft stores content only and queries classify it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import NotFound
from domain.ids import draft_uuid
from domain.json_types import JsonObject, json_equal


class Draft(Aggregate):
    @staticmethod
    def create_id(workspace_id: str, user: str, **_: Any) -> UUID:
        return draft_uuid(workspace_id, user)

    @event("DraftStarted")
    def __init__(self, workspace_id: str, user: str) -> None:
        self.workspace_id = workspace_id
        self.user = user
        self.changes: dict[str, JsonObject | None] = {}

    def write_file(self, path: str, content: JsonObject) -> None:
        if not json_equal(self.changes.get(path, ...), content):
            self._file_written(path, content)

    @event("DraftFileWritten")
    def _file_written(self, path: str, content: JsonObject) -> None:
        self.changes[path] = content

    def delete_file(self, path: str, *, on_main: bool) -> None:
        """Delete a main file in the draft, or drop a file the draft added."""
        if on_main:
            if path not in self.changes or self.changes[path] is not None:
                self._file_deleted(path)
        elif path in self.changes:
            self._file_reverted(path)
        else:
            raise NotFound(f"{path} is neither on main nor in the draft of {self.user}")

    @event("DraftFileDeleted")
    def _file_deleted(self, path: str) -> None:
        self.changes[path] = None

    @event("DraftFileReverted")
    def _file_reverted(self, path: str) -> None:
        self.changes.pop(path, None)

    def discard(self) -> None:
        if self.changes:
            self._discarded()

    @event("DraftDiscarded")
    def _discarded(self) -> None:
        self.changes.clear()

    def rebase(
        self,
        pipeline_id: str,
        published_paths: Iterable[str],
        planned: Mapping[str, JsonObject | None],
    ) -> None:
        """Published changes leave the draft; failed or skipped ones stay.

        ``planned`` is the draft's changes as the plan saw them: a path the user
        wrote again since (during the run, say) holds something nobody published,
        so it stays, as a change against the new main.
        """
        gone = sorted(
            p
            for p in published_paths
            if p in self.changes and p in planned and json_equal(self.changes[p], planned[p])
        )
        if gone:
            self._rebased(pipeline_id, gone)

    @event("DraftRebased")
    def _rebased(self, pipeline_id: str, paths: list[str]) -> None:
        for path in paths:
            self.changes.pop(path, None)
