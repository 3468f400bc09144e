"""Request and response models of the HTTP API (API.md). Unknown request fields are a 422."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Response(BaseModel):
    model_config = ConfigDict(extra="allow")


WORKSPACE_ID = r"^[a-z0-9][a-z0-9-]{0,62}$"
USER_ID = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"


class ConnectorConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["sandbox"]
    base_url: str = Field(pattern=r"^https?://[^\s]+$", max_length=2048)


class CreateWorkspace(Request):
    id: str = Field(pattern=WORKSPACE_ID)
    connector: ConnectorConfig


class WorkspaceCreated(Response):
    id: str
    connector: dict[str, Any]


class WorkspaceInfo(Response):
    id: str
    main_version: int
    publishing: str | None
    folders: list[str]


class SchemaField(Request):
    name: str = Field(min_length=1, max_length=128)
    reference: bool = False
    referenceTarget: str | None = Field(default=None, max_length=512)
    multiple: bool = False


class FolderSchemaBody(Request):
    idPath: str = Field(default="id", min_length=1, max_length=128)
    fields: list[SchemaField] = Field(default_factory=list, max_length=500)
    readOnly: list[str] = Field(default_factory=lambda: ["createdOn", "lastUpdated", "cdnUrl"])
    filenameFrom: str | None = "slug"


class FolderSchemaOut(Response):
    folder: str
    idPath: str
    fields: list[dict[str, Any]]
    readOnly: list[str]
    filenameFrom: str | None


class PullRequest(Request):
    folders: list[str] | None = Field(default=None, max_length=500)


class PullAccepted(Response):
    pull_id: str


class PullResult(Response):
    pull_id: str
    state: str
    created: int
    updated: int
    unchanged: int
    deleted: int


class Change(Response):
    path: str
    change: Literal["added", "modified", "deleted"]


class DraftChanges(Response):
    version: int
    changes: list[Change]


class PhaseSummary(Response):
    phase: Literal["edit", "create", "delete", "backfill"]
    entries: int


class PlannedEntry(Response):
    path: str
    phase: str
    operation: dict[str, Any]
    deferred_fields: list[str]


class PlanOut(Response):
    pipeline_id: str
    workspace: str
    user: str
    state: str
    main_version: int
    draft_version: int
    phases: list[PhaseSummary]
    entries: list[PlannedEntry]


class RunAccepted(Response):
    pipeline_id: str
    state: str


class PhaseCounts(Response):
    planned: int
    published: int
    failed: int
    skipped: int


class EntryError(Response):
    """An entry's error; a whole pipeline's (stale, connector failure) has no path or phase."""

    path: str | None
    phase: str | None
    message: str


class PipelineStatus(Response):
    pipeline_id: str
    workspace: str
    user: str
    state: Literal[
        "planned", "running", "completed", "completed_with_errors", "failed", "cancelled", "stale"
    ]
    phase: str | None
    counts: dict[str, PhaseCounts]
    errors: list[EntryError]
    created_at: str | None
    started_at: str | None
    finished_at: str | None


class PipelineList(Response):
    pipelines: list[PipelineStatus]


class EntryStatus(Response):
    path: str
    phase: str
    status: Literal["planned", "published", "failed", "skipped"]
    record_id: str | None
    error: str | None


class EntryList(Response):
    entries: list[EntryStatus]


class FileIndexRow(Response):
    folder: str
    record_id: str
    filename: str
    last_seen_at: str | None


class ReferenceRow(Response):
    branch: str
    source_path: str
    target_folder: str
    target_filename: str | None
    target_record_id: str | None


class ReferenceList(Response):
    references: list[ReferenceRow]


class StreamTicket(Response):
    ticket: str
    expires_at: str


class Health(Response):
    status: Literal["ok"]


class ErrorBody(Response):
    error: str
    message: str
    details: Any = None
