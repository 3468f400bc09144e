"""Request and response models of the HTTP API (API.md). Unknown request fields are a 422.

A model that shares its concept with the application (a pipeline's status, a
FileIndex entry, a reference, an entry's status) carries ``Body`` in its name:
it is that concept's JSON form on the wire, not the concept itself.
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from domain.connector_config import MAX_URL_LENGTH, check_connector, credential_variables
from domain.errors import InvalidConnector
from domain.json_types import JsonObject, JsonValue
from domain.schema import FIELD_NAME, MAX_READ_ONLY


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ResponseBody(BaseModel):
    model_config = ConfigDict(extra="allow")


WORKSPACE_ID = r"^[a-z0-9][a-z0-9-]{0,62}$"
USER_ID = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"


class CredentialReference(RequestBody):
    env: str = Field(description="The environment variable of the publishd processes holding it")


class ConnectorConfig(RequestBody):
    """API.md §1 and §12: where the service is and how to reach it, never a secret itself.

    Credentials are named by reference (``{"env": NAME}``); a variable that the
    server's environment lacks is refused here, before anything is recorded.
    """

    type: Literal["sandbox", "webflow", "airtable"]
    base_url: str = Field(pattern=r"^https?://[!-~]+$", max_length=MAX_URL_LENGTH)
    site_id: str | None = None
    base_id: str | None = None
    token: CredentialReference | None = None
    collections: dict[str, str] | None = None
    tables: dict[str, str] | None = None
    merge_on: dict[str, str] | None = None
    live: bool | None = None
    requests_per_second: float | None = None
    requests_per_minute: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _strict(cls, data: Any) -> Any:
        # The domain's own error, not pydantic's: its message names the key refused,
        # and nothing that could hold a secret is echoed or recorded.
        if not isinstance(data, dict):
            return data
        checked = check_connector(data)
        for name in credential_variables(checked):
            if not os.environ.get(name):
                raise InvalidConnector(
                    f"environment variable {name} (connector.token) is not set for publishd"
                )
        return checked

    def recorded(self) -> JsonObject:
        """The config as it is recorded: only the keys given."""
        return self.model_dump(mode="json", exclude_none=True)


class CreateWorkspace(RequestBody):
    id: str = Field(pattern=WORKSPACE_ID)
    connector: ConnectorConfig


class WorkspaceCreated(ResponseBody):
    id: str
    connector: JsonObject


class WorkspaceInfo(ResponseBody):
    id: str
    main_version: int
    publishing: str | None
    folders: list[str]


FieldName = Annotated[str, Field(pattern=FIELD_NAME)]


class SchemaField(RequestBody):
    name: FieldName
    reference: StrictBool = False
    referenceTarget: str | None = Field(default=None, max_length=512)
    multiple: StrictBool = False


class FolderSchemaBody(RequestBody):
    idPath: FieldName = "id"
    fields: list[SchemaField] = Field(default_factory=list, max_length=500)
    readOnly: list[FieldName] = Field(
        default_factory=lambda: ["createdOn", "lastUpdated", "cdnUrl"], max_length=MAX_READ_ONLY
    )
    filenameFrom: FieldName | None = "slug"


class FolderSchemaOut(ResponseBody):
    folder: str
    idPath: str
    fields: list[JsonObject]
    readOnly: list[str]
    filenameFrom: str | None


class PulledRecord(RequestBody):
    folder: str = Field(min_length=1, max_length=1024)
    record_id: str = Field(min_length=1, max_length=512)


class PullRequest(RequestBody):
    """One scope at most: whole folders, or named records (by main's paths or by id).

    No body (or none of them): every folder with a schema.
    """

    folders: list[str] | None = Field(default=None, max_length=500)
    paths: list[str] | None = Field(default=None, min_length=1, max_length=1000)
    records: list[PulledRecord] | None = Field(default=None, min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _one_scope(self) -> PullRequest:
        if sum(scope is not None for scope in (self.folders, self.paths, self.records)) > 1:
            raise ValueError("name one of folders, paths or records")
        return self


class PullAccepted(ResponseBody):
    pull_id: str
    state: Literal["running"]


class PullResult(ResponseBody):
    pull_id: str
    state: str
    created: int
    updated: int
    unchanged: int
    deleted: int


PullState = Literal["running", "completed", "failed"]


class PullStatusBody(ResponseBody):
    """A pull as ``GET /pulls/{id}`` reports it: ``scope`` is ``{"folders"}`` or ``{"records"}``."""

    pull_id: str
    workspace: str
    scope: JsonObject
    state: PullState
    created: int
    updated: int
    unchanged: int
    deleted: int
    error: str | None
    started_at: str | None
    finished_at: str | None


class PullList(ResponseBody):
    pulls: list[PullStatusBody]


class Change(ResponseBody):
    path: str
    change: Literal["added", "modified", "deleted"]


class DraftChanges(ResponseBody):
    version: int
    changes: list[Change]


class PlanOptions(RequestBody):
    refresh: bool = False
    """Pull every main record the draft touches first, so the plan starts from the service."""
    on_upstream_change: Literal["fail", "overwrite"] = "fail"


class PhaseSummary(ResponseBody):
    phase: Literal["edit", "create", "delete", "backfill"]
    entries: int
    calls: int


class FieldDiff(ResponseBody):
    field: str
    before: JsonValue
    after: JsonValue


class PlannedEntry(ResponseBody):
    path: str
    phase: str
    operation: JsonObject
    deferred_fields: list[str]
    depends_on: list[str]
    diff: list[FieldDiff]


class PlanOut(ResponseBody):
    pipeline_id: str
    workspace: str
    user: str
    state: str
    main_version: int
    draft_version: int
    phases: list[PhaseSummary]
    estimated_calls: int
    on_upstream_change: str
    entries: list[PlannedEntry]


class RunAccepted(ResponseBody):
    pipeline_id: str
    state: str


class PhaseCounts(ResponseBody):
    planned: int
    published: int
    failed: int
    skipped: int


class EntryError(ResponseBody):
    """An entry's error; a whole pipeline's (stale, connector failure) has no path or phase."""

    path: str | None
    phase: str | None
    message: str
    code: str | None
    """``rejected``, ``changed_upstream``, ``skipped_dependency``; ``stale_plan`` or ``fatal`` for
    a whole pipeline's error."""
    details: JsonValue = None
    """For ``changed_upstream``: ``[{"field", "main", "upstream", "draft"}]``."""


class PipelineStatusBody(ResponseBody):
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
    trace_id: str | None = None
    """The trace of the request that planned it: grep the logs for it to follow the run."""


class PipelineList(ResponseBody):
    pipelines: list[PipelineStatusBody]


class EntryStatusBody(ResponseBody):
    path: str
    phase: str
    status: Literal["planned", "published", "failed", "skipped"]
    record_id: str | None
    error: str | None


class EntryList(ResponseBody):
    entries: list[EntryStatusBody]
    next: str | None = None
    """With ``?limit=``: the ``after=`` of the next page, null on the last one."""


# --- what the console asks for (API.md §14) --------------------------------------------
class WorkspaceSummary(ResponseBody):
    id: str
    main_version: int
    publishing: str | None
    folders: list[str]


class WorkspaceList(ResponseBody):
    workspaces: list[WorkspaceSummary]


class DraftSummary(ResponseBody):
    user: str
    changes: int
    """Paths the draft adds, modifies or deletes."""


class DraftList(ResponseBody):
    drafts: list[DraftSummary]


class PipelineAtVersionBody(ResponseBody):
    """A pipeline as it was after its event ``version`` (the ``id:`` of its stream)."""

    pipeline_id: str
    workspace: str
    user: str
    version: int
    state: str
    phase: str | None
    counts: dict[str, PhaseCounts]
    lease_owner: str | None
    errors: list[EntryError]


class FileIndexEntryBody(ResponseBody):
    folder: str
    record_id: str
    filename: str
    last_seen_at: str | None


class ReferenceBody(ResponseBody):
    branch: str
    source_path: str
    target_folder: str
    target_filename: str | None
    target_record_id: str | None


class ReferenceList(ResponseBody):
    references: list[ReferenceBody]


class StreamTicket(ResponseBody):
    ticket: str
    expires_at: str


class Health(ResponseBody):
    status: Literal["ok"]


class ErrorBody(ResponseBody):
    error: str
    message: str
    details: JsonValue = None
