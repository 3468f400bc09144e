"""The Workspace aggregate: connector, folder schemas, main version, publish and pull locks.

Main's content changes are events of the workspace (``MainChanged``), so that
the main version is strongly consistent with the locks and the staleness check.
The aggregate keeps only the version; the content lives in the main-files
projection.

The two locks exclude each other: main is written either by one pipeline or by
one pull at a time, never both. Both are event-sourced state, so two commands
racing for them meet in optimistic concurrency and exactly one wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import PublishInProgress, PullInProgress, UnknownFolder
from domain.ids import workspace_uuid
from domain.json_types import JsonObject
from domain.paths import parse_path
from domain.schema import FolderSchema


class MainChange(NamedTuple):
    """One file of main changed by a pull or a publish; ``content`` None: removed."""

    path: str
    content: JsonObject | None
    record_id: str | None


class Workspace(Aggregate):
    @staticmethod
    def create_id(workspace_id: str, **_: Any) -> UUID:
        return workspace_uuid(workspace_id)

    @event("WorkspaceCreated")
    def __init__(self, workspace_id: str, connector: JsonObject) -> None:
        self.workspace_id = workspace_id
        self.connector = connector
        self.schemas: dict[str, JsonObject] = {}
        self.main_version = 0
        self.publishing: str | None = None
        self.pulling: str | None = None

    def change_connector(self, connector: JsonObject) -> None:
        """Point the workspace at another address of its service (not while main is written)."""
        self.ensure_not_publishing()
        self.ensure_not_pulling()
        if connector != self.connector:
            self._connector_changed(connector)

    @event("ConnectorChanged")
    def _connector_changed(self, connector: JsonObject) -> None:
        self.connector = connector

    # --- schemas ---------------------------------------------------------
    def register_schema(self, schema: FolderSchema) -> None:
        self._schema_registered(schema.folder, schema.to_dict())

    @event("SchemaRegistered")
    def _schema_registered(self, folder: str, schema: JsonObject) -> None:
        self.schemas[folder] = schema

    def schema(self, folder: str) -> FolderSchema | None:
        data = self.schemas.get(folder)
        return None if data is None else FolderSchema.from_recorded(folder, data)

    def check_path(self, path: str) -> str:
        """The path, normalised; refused unless it names a file of a folder with a schema."""
        file_path = parse_path(path)
        if file_path.folder not in self.schemas:
            raise UnknownFolder(
                f"folder {file_path.folder!r} has no schema in workspace {self.workspace_id}"
            )
        return file_path.path

    def folder_schemas(self) -> dict[str, FolderSchema]:
        return {folder: FolderSchema.from_recorded(folder, d) for folder, d in self.schemas.items()}

    # --- the publish lock ------------------------------------------------
    def acquire_publish_lock(self, pipeline_id: str) -> None:
        if self.publishing == pipeline_id:
            return
        self.ensure_not_publishing()
        self.ensure_not_pulling()
        self._lock_acquired(pipeline_id)

    @event("PublishLockAcquired")
    def _lock_acquired(self, pipeline_id: str) -> None:
        self.publishing = pipeline_id

    def release_publish_lock(self, pipeline_id: str) -> None:
        if self.publishing == pipeline_id:
            self._lock_released(pipeline_id)

    @event("PublishLockReleased")
    def _lock_released(self, pipeline_id: str) -> None:
        self.publishing = None

    def ensure_not_publishing(self) -> None:
        if self.publishing is not None:
            raise PublishInProgress(
                f"pipeline {self.publishing} is publishing in workspace {self.workspace_id}",
                {"pipeline_id": self.publishing},
            )

    # --- the pull lock ---------------------------------------------------
    def acquire_pull_lock(self, pull_id: str) -> None:
        """Idempotent for the holder, so a resumed pull may take it again."""
        if self.pulling == pull_id:
            return
        self.ensure_not_publishing()
        self.ensure_not_pulling()
        self._pull_lock_acquired(pull_id)

    @event("PullLockAcquired")
    def _pull_lock_acquired(self, pull_id: str) -> None:
        self.pulling = pull_id

    def release_pull_lock(self, pull_id: str) -> None:
        if self.pulling == pull_id:
            self._pull_lock_released(pull_id)

    @event("PullLockReleased")
    def _pull_lock_released(self, pull_id: str) -> None:
        self.pulling = None

    def ensure_not_pulling(self) -> None:
        if self.pulling is not None:
            raise PullInProgress(
                f"pull {self.pulling} is pulling workspace {self.workspace_id}",
                {"pull_id": self.pulling},
            )

    # --- main ------------------------------------------------------------
    def change_main(self, source: str, changes: Sequence[MainChange]) -> int:
        """Record changes to main; returns the new main version."""
        if changes:
            self._main_changed(source, [change._asdict() for change in changes])
        return self.main_version

    @event("MainChanged")
    def _main_changed(self, source: str, changes: list[JsonObject]) -> None:
        self.main_version += 1

    def mark_seen(self, source: str, folder: str, record_ids: list[str]) -> None:
        """A complete pull saw these unchanged records (FileIndex ``last_seen_at``)."""
        if record_ids:
            self._records_seen(source, folder, record_ids)

    @event("RecordsSeen")
    def _records_seen(self, source: str, folder: str, record_ids: list[str]) -> None:
        pass
