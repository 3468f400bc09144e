"""Queries: the read models of publishd, as the HTTP API and the CLI ask for them.

The projections are eventually consistent, so every query that a client asks
right after its own command first catches up to the head of the event store:
a client never reads a view older than its last write. The audit query reads
the event store itself, so it needs no projection at all.
"""

from __future__ import annotations

from uuid import UUID

from application.app import PublishdApplication
from application.views import (
    EntryCursor,
    FileIndexEntry,
    PipelineStatus,
    PullStatus,
    ReferenceEntry,
    Views,
)
from domain.errors import NotFound
from domain.json_types import JsonObject
from domain.paths import parse_ref
from domain.pipeline import PublishPipeline


class Queries:
    def __init__(self, app: PublishdApplication, views: Views) -> None:
        self.app = app
        self.views = views

    # --- pipelines ----------------------------------------------------------------
    def pipeline_status(self, pipeline_id: str) -> PipelineStatus:
        self._catch_up_with("pipeline", pipeline_id, ("pipeline_status",))
        status = self.views.pipeline_status(pipeline_id)
        if status is None:
            raise NotFound(f"pipeline {pipeline_id} does not exist")
        return status

    def list_pipelines(
        self,
        workspace: str | None,
        user: str | None,
        state: str | None,
        limit: int,
        before: str | None,
    ) -> list[PipelineStatus]:
        self.app.catch_up()
        return self.views.list_pipelines(workspace, user, state, limit, before)

    def pipeline_entries(
        self, pipeline_id: str, phase: str | None, status: str | None
    ) -> list[JsonObject]:
        self._catch_up_with("pipeline", pipeline_id, ("pipeline_entries",))
        return self.views.pipeline_entries(pipeline_id, phase, status)

    def pipeline_entries_page(
        self,
        pipeline_id: str,
        phase: str | None,
        status: str | None,
        after: EntryCursor | None,
        limit: int,
    ) -> tuple[list[JsonObject], EntryCursor | None]:
        """A page of ``pipeline_entries``, and the cursor of the next (None on the last page)."""
        self._catch_up_with("pipeline", pipeline_id, ("pipeline_entries",))
        rows = self.views.pipeline_entries_page(pipeline_id, phase, status, after, limit + 1)
        cursors = [row.pop("cursor") for row in rows]
        return rows[:limit], cursors[limit - 1] if len(rows) > limit else None

    def pipeline_at_version(self, pipeline_id: str, version: int | None) -> JsonObject:
        """A pipeline as it was after ``version`` events (the latest for ``None``), for audits.

        The aggregate's own fold up to that event, so an audit shows exactly the
        state the commands of that moment saw. Event ``N`` of the pipeline's
        stream (its ``id:``) is version ``N``.
        """
        pipeline = self.app.load(pipeline_id, PublishPipeline, version)
        if pipeline is None:
            raise NotFound(f"pipeline {pipeline_id} does not exist")
        if version is not None and pipeline.version < version:
            raise NotFound(f"pipeline {pipeline_id} has no event {version}")
        return {
            "pipeline_id": pipeline.pipeline_id,
            "workspace": pipeline.workspace_id,
            "user": pipeline.user,
            "version": pipeline.version,
            "state": pipeline.state,
            "phase": pipeline.phase,
            "counts": pipeline.counts(),
            "lease_owner": pipeline.lease_owner,
            "errors": [
                {"path": e.path, "phase": e.phase, "message": e.error, "code": e.error_code}
                for e in pipeline.entries.values()
                if e.error
            ],
        }

    def _catch_up_with(self, kind: str, object_id: str, names: tuple[str, ...]) -> UUID:
        """Wait for the rows of one aggregate (404 for an id that cannot be one); its id."""
        try:
            key = UUID(object_id)
        except ValueError:
            raise NotFound(f"{kind} {object_id} does not exist") from None
        self.app.catch_up_with(key, names)
        return key

    # --- workspaces and drafts -----------------------------------------------------
    def workspaces(self, only: str | None) -> list[JsonObject]:
        """Every workspace, or just ``only`` (a workspace token's own) if it exists."""
        self.app.catch_up()
        ids = self.views.workspace_ids() if only is None else [only]
        found = []
        for workspace_id in ids:
            try:
                workspace = self.app.workspace(workspace_id)
            except NotFound:
                continue  # (a workspace token's workspace that was never created)
            found.append(
                {
                    "id": workspace_id,
                    "main_version": workspace.main_version,
                    "publishing": workspace.publishing,
                    "folders": sorted(workspace.schemas),
                }
            )
        return found

    def drafts(self, workspace_id: str) -> list[JsonObject]:
        """The users whose drafts change something, with how many paths each changes."""
        self.app.workspace(workspace_id)
        self.app.catch_up()
        return [
            {"user": user, "changes": changes}
            for user, changes in self.views.draft_users(workspace_id)
        ]

    # --- pulls -------------------------------------------------------------------
    def pull_status(self, pull_id: str) -> PullStatus:
        key = self._catch_up_with("pull", pull_id, ("pull_status",))
        status = self.views.pull_status(str(key))  # (the views key pulls by the canonical form)
        if status is None:
            raise NotFound(f"pull {pull_id} does not exist")
        return status

    def list_pulls(self, workspace: str, state: str | None, limit: int) -> list[PullStatus]:
        """Newest first; 404 for an unknown workspace rather than an empty list."""
        self.app.workspace(workspace)
        self.app.catch_up()
        return self.views.list_pulls(workspace, state, limit)

    # --- files on main and in drafts ----------------------------------------------
    def draft_changes(self, workspace_id: str, user: str) -> JsonObject:
        """The draft's paths as added, modified or deleted against main now."""
        self.app.workspace(workspace_id)
        draft = self.app.draft(workspace_id, user)
        if draft is None:
            return {"version": 0, "changes": []}
        self.app.catch_up_with_main(workspace_id)
        on_main = self.views.main_paths_exist(workspace_id, list(draft.changes))
        changes = []
        for path in sorted(draft.changes):
            content = draft.changes[path]
            if content is None:
                if path in on_main:
                    changes.append({"path": path, "change": "deleted"})
            else:
                changes.append({"path": path, "change": "modified" if path in on_main else "added"})
        return {"version": draft.version, "changes": changes}

    def read_file(self, workspace_id: str, path: str, user: str | None = None) -> JsonObject:
        """A file as ``user``'s draft has it (or main, without a user or a change)."""
        checked = self.app.workspace(workspace_id).check_path(path)
        if user is not None:
            draft = self.app.draft(workspace_id, user)
            if draft is not None and checked in draft.changes:
                content = draft.changes[checked]
                if content is None:
                    raise NotFound(f"{checked} is deleted in the draft of {user}")
                return content
        self.app.catch_up_with_main(workspace_id)
        found = self.views.main_file(workspace_id, checked)
        if found is None:
            raise NotFound(f"{checked} does not exist")
        return found

    # --- FileIndex and FileReference ------------------------------------------------
    def file_index(
        self, workspace: str, folder: str, record_id: str | None, filename: str | None
    ) -> FileIndexEntry:
        """The entry of one record, by its id or by its filename (exactly one is given)."""
        self.app.workspace(workspace)  # 404 for an unknown workspace, not for its record
        self.app.catch_up_with_main(workspace)
        if record_id is not None:
            row = self.views.file_index_by_record(workspace, folder, record_id)
        else:
            assert filename is not None
            row = self.views.file_index_by_filename(workspace, folder, filename)
        if row is None:
            raise NotFound(f"no FileIndex entry for that record in {folder}")
        return row

    def references(
        self, workspace: str, target: str | None, folder: str | None, record_id: str | None
    ) -> list[ReferenceEntry]:
        """Who points at a file: given as an @-reference ``target``, or as folder and record id."""
        self.app.workspace(workspace)
        self.app.catch_up()
        if target is not None:
            file_path = parse_ref(target)
            return self.views.references(workspace, file_path.folder, file_path.filename, None)
        assert folder is not None
        return self.views.references(workspace, folder, None, record_id)
