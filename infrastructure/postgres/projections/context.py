"""The facts every projection may look up, on PostgreSQL, and a process's memory of them.

Which workspace an aggregate belongs to, and whose draft a draft is, are
learnt from creation events that may lie far back in the stream; the
projections look them up for nearly every event, so they are read through a
per-process cache and written in the batch's transaction.
"""

from __future__ import annotations

from application.projections.ports import ProjectionContext
from domain.json_types import JsonObject
from infrastructure.postgres.projections.parameters import columns
from infrastructure.postgres.projections.tables import Conn, ProjectionTables


class ProjectionCaches:
    """Per-process memory of the shared facts and of FileReference's schemas.

    Cleared whenever a batch fails, so nothing learned in a rolled-back batch
    (a schema registered later in the stream, say) outlives it.
    """

    def __init__(self) -> None:
        self.workspaces: dict[str, str] = {}
        self.drafts: dict[str, tuple[str, str]] = {}
        self.schemas: dict[tuple[str, str], JsonObject | None] = {}

    def clear(self) -> None:
        self.workspaces.clear()
        self.drafts.clear()
        self.schemas.clear()


class PostgresContext(ProjectionContext):
    """Shared facts read through the cache; new ones written in the batch's transaction."""

    def __init__(self, conn: Conn, tables: ProjectionTables, caches: ProjectionCaches) -> None:
        self.conn, self.tables, self.caches = conn, tables, caches
        self.new_workspaces: dict[str, str] = {}
        self.new_drafts: dict[str, tuple[str, str]] = {}

    def workspace_of(self, originator_id: str) -> str | None:
        found = self.caches.workspaces.get(originator_id)
        if found is None:
            row = self.conn.execute(
                self.tables.q(
                    "SELECT workspace FROM {projection_workspaces} WHERE originator_id = %s::uuid"
                ),
                (originator_id,),
            ).fetchone()
            if row is not None:
                found = self.caches.workspaces[originator_id] = row[0]
        return found

    def draft_of(self, originator_id: str) -> tuple[str, str] | None:
        found = self.caches.drafts.get(originator_id)
        if found is None:
            row = self.conn.execute(
                self.tables.q(
                    'SELECT workspace, "user" FROM {projection_drafts}'
                    " WHERE originator_id = %s::uuid"
                ),
                (originator_id,),
            ).fetchone()
            if row is not None:
                found = self.caches.drafts[originator_id] = (row[0], row[1])
        return found

    def remember_workspace(self, originator_id: str, workspace_id: str) -> None:
        if self.caches.workspaces.get(originator_id) != workspace_id:
            self.caches.workspaces[originator_id] = workspace_id
            self.new_workspaces[originator_id] = workspace_id

    def remember_draft(self, originator_id: str, workspace_id: str, user: str) -> None:
        if self.caches.drafts.get(originator_id) != (workspace_id, user):
            self.caches.drafts[originator_id] = (workspace_id, user)
            self.new_drafts[originator_id] = (workspace_id, user)

    def flush(self) -> None:
        q = self.tables.q
        if self.new_workspaces:
            self.conn.execute(
                q(
                    "INSERT INTO {projection_workspaces}"
                    " SELECT * FROM unnest(%b::text[]::uuid[], %b::text[])"
                    " ON CONFLICT DO NOTHING"
                ),
                (list(self.new_workspaces), list(self.new_workspaces.values())),
            )
        if self.new_drafts:
            ws, users = columns(self.new_drafts.values(), 2)
            self.conn.execute(
                q(
                    "INSERT INTO {projection_drafts}"
                    " SELECT * FROM unnest(%b::text[]::uuid[], %b::text[], %b::text[])"
                    " ON CONFLICT DO NOTHING"
                ),
                (list(self.new_drafts), ws, users),
            )
        self.new_workspaces.clear()
        self.new_drafts.clear()
