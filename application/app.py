"""PublishdApplication: the commands of publishd on one event store.

One eventsourcing ``Application`` holds every aggregate (workspaces, drafts,
pulls, pipelines), so the notification log is one global order: the audit
stream, the projections and the read-your-writes positions all use it.

Commands decide through the aggregates and save; each returns (or exposes) the
notification position it produced so callers can wait for the projections.
Queries that must see their own writes wait for that position first.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from copy import deepcopy
from typing import Protocol, TypeVar, runtime_checkable
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, Repository
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import strtobool

from application import log_context
from application.concurrency import ConflictBudget, SharedCacheRepository
from application.planner_inputs import ViewsPlannerInputs
from application.pull_scope import pull_scope
from application.views import Views
from domain.connector_config import batch_limits
from domain.draft import Draft
from domain.errors import (
    AlreadyExists,
    InvalidContent,
    NotFound,
    PublishInProgress,
    StalePlan,
    WriteConflict,
)
from domain.ids import draft_uuid, workspace_uuid
from domain.json_types import JsonObject, JsonValue
from domain.pipeline import PublishPipeline
from domain.plan import UpstreamPolicy
from domain.planner import plan as build_plan
from domain.pull import Pull
from domain.schema import FolderSchema
from domain.workspace import Workspace

T = TypeVar("T", bound=Aggregate)
R = TypeVar("R")
log = logging.getLogger(__name__)

READ_TIMEOUT_S = 10.0
MAIN_VIEWS = ("main_files", "file_index", "file_reference")
"""The projections of a workspace's main: fed by the workspace's own events only."""


@runtime_checkable
class AggregatePositions(Protocol):
    """A recorder that can tell where an aggregate's latest event stands in the global order."""

    def last_notification_id(self, originator_id: UUID) -> int: ...


class PublishdApplication(Application[UUID]):
    name = "publishd"

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        views: Views | None = None,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        conflict_budget: ConflictBudget | None = None,
    ) -> None:
        super().__init__(env)
        self.conflict_budget = conflict_budget or ConflictBudget()
        self._views = views
        self.new_id = new_id
        self.last_position = 0

    @property
    def views(self) -> Views:
        if self._views is None:
            raise RuntimeError("this application was built without views")
        return self._views

    def construct_repository(self) -> Repository[UUID]:
        cache_maxsize = self.env.get(self.AGGREGATE_CACHE_MAXSIZE)
        return SharedCacheRepository(
            event_store=self.events,
            snapshot_store=self.snapshots,
            cache_maxsize=int(cache_maxsize) if cache_maxsize else None,
            fastforward=strtobool(self.env.get(self.AGGREGATE_CACHE_FASTFORWARD, "y")),
            deepcopy_from_cache=strtobool(self.env.get(self.DEEPCOPY_FROM_AGGREGATE_CACHE, "y")),
        )

    # --- saving -----------------------------------------------------------
    def save_all(self, *aggregates: Aggregate | None) -> int:
        """Save atomically; returns the highest notification id written (0 if none)."""
        recordings = self.save(*aggregates)
        position = max((r.notification.id for r in recordings), default=0)
        self.last_position = max(self.last_position, position)
        return position

    def _cache(self, aggregate: Aggregate) -> None:
        """Hand the repository's cache a copy of an aggregate just saved.

        The cache is fast-forwarded from the event store on every load, so any
        saved version is a correct start; without this, the first command on a
        new pipeline replays all its EntryPlanned events (~40 ms a thousand).
        """
        repository = self.repository
        if isinstance(repository, SharedCacheRepository):
            repository.put_in_cache(aggregate.id, deepcopy(aggregate))

    def head(self) -> int:
        return self.recorder.max_notification_id() or 0

    def catch_up(self, position: int | None = None, names: Sequence[str] | None = None) -> None:
        """Wait until the projections (or ``names``) have applied ``position`` (default: head)."""
        target = self.head() if position is None else position
        if target and not self.views.wait_for_position(target, READ_TIMEOUT_S, names):
            raise TimeoutError(f"projections did not reach position {target} in time")

    def catch_up_with(self, aggregate_id: UUID, names: Sequence[str] | None = None) -> None:
        """Wait until the projections have applied every event of one aggregate saved so far.

        What a read of that aggregate's rows needs to see its own writes: the
        events other aggregates commit meanwhile (twenty other plans, a busy
        run) do not hold it up, as they would waiting for the global head. A
        recorder that cannot tell an aggregate's position falls back to the head.
        """
        recorder = self.recorder
        if isinstance(recorder, AggregatePositions):
            self.catch_up(recorder.last_notification_id(aggregate_id), names)
        else:
            self.catch_up(names=names)

    def catch_up_with_main(self, workspace_id: str) -> None:
        """Wait until the main views show every change to this workspace's main saved so far."""
        self.catch_up_with(workspace_uuid(workspace_id), MAIN_VIEWS)

    def load(self, aggregate_id: UUID | str, cls: type[T], version: int | None = None) -> T | None:
        """The aggregate of that id and class (as it was at ``version``), or None.

        None also for a malformed id.
        """
        try:
            uid = aggregate_id if isinstance(aggregate_id, UUID) else UUID(aggregate_id)
            aggregate: Aggregate = self.repository.get(uid, version=version)
        except (ValueError, AggregateNotFoundError):
            return None
        return aggregate if isinstance(aggregate, cls) else None

    # --- workspaces and schemas ---------------------------------------------
    def workspace(self, workspace_id: str) -> Workspace:
        workspace = self.load(workspace_uuid(workspace_id), Workspace)
        if workspace is None:
            raise NotFound(f"workspace {workspace_id} does not exist")
        return workspace

    def workspace_exists(self, workspace_id: str) -> bool:
        try:
            self.workspace(workspace_id)
        except NotFound:
            return False
        return True

    def create_workspace(self, workspace_id: str, connector: JsonObject) -> Workspace:
        if self.workspace_exists(workspace_id):
            raise AlreadyExists(f"workspace {workspace_id} already exists")
        workspace = Workspace(workspace_id=workspace_id, connector=connector)
        try:
            self.save_all(workspace)
        except IntegrityError:
            raise AlreadyExists(f"workspace {workspace_id} already exists") from None
        return workspace

    def change_connector(self, workspace_id: str, connector: JsonObject) -> None:
        def command() -> int:
            workspace = self.workspace(workspace_id)
            workspace.change_connector(connector)
            return self.save_all(workspace)

        self.retrying(command)

    def register_schema(
        self, workspace_id: str, folder: str, data: Mapping[str, JsonValue]
    ) -> JsonObject:
        schema = FolderSchema.from_dict(folder, data)
        self.retrying(lambda: self._register_schema(workspace_id, schema))
        return schema.to_dict()

    def _register_schema(self, workspace_id: str, schema: FolderSchema) -> int:
        workspace = self.workspace(workspace_id)
        workspace.register_schema(schema)
        return self.save_all(workspace)

    def retrying(self, command: Callable[[], R]) -> R:
        """Re-run a read-decide-save command when another writer moved an aggregate on.

        Past the budget the caller gets ``WriteConflict`` (409), never the raw
        ``IntegrityError`` (which would be a 500).
        """
        return self.conflict_budget.run(command)

    # --- drafts ------------------------------------------------------------
    def draft(self, workspace_id: str, user: str, version: int | None = None) -> Draft | None:
        """The user's draft (as it was at ``version``: what a plan of that version saw)."""
        return self.load(draft_uuid(workspace_id, user), Draft, version)

    def _draft_for_write(self, workspace_id: str, user: str) -> Draft:
        return self.draft(workspace_id, user) or Draft(workspace_id=workspace_id, user=user)

    def write_draft_file(self, workspace_id: str, user: str, path: str, content: JsonValue) -> int:
        if not isinstance(content, dict):
            raise InvalidContent("a file's content must be a JSON object")
        workspace = self.workspace(workspace_id)
        checked = workspace.check_path(path)

        def command() -> int:
            draft = self._draft_for_write(workspace_id, user)
            draft.write_file(checked, content)
            return self.save_all(draft)

        return self.retrying(command)

    def delete_draft_file(self, workspace_id: str, user: str, path: str) -> int:
        workspace = self.workspace(workspace_id)
        checked = workspace.check_path(path)
        self.catch_up_with_main(workspace_id)
        on_main = bool(self.views.main_paths_exist(workspace_id, [checked]))

        def command() -> int:
            draft = self._draft_for_write(workspace_id, user)
            draft.delete_file(checked, on_main=on_main)
            return self.save_all(draft)

        return self.retrying(command)

    def discard_draft(self, workspace_id: str, user: str) -> int:
        self.workspace(workspace_id)

        def command() -> int:
            draft = self.draft(workspace_id, user)
            if draft is None:
                return 0
            draft.discard()
            return self.save_all(draft)

        return self.retrying(command)

    # --- plan, run, cancel, retry -------------------------------------------
    def plan(
        self,
        workspace_id: str,
        user: str,
        *,
        on_upstream_change: UpstreamPolicy = UpstreamPolicy.FAIL,
    ) -> PublishPipeline:
        workspace = self.workspace(workspace_id)
        draft = self.draft(workspace_id, user)
        changes: dict[str, JsonObject | None] = {} if draft is None else dict(draft.changes)
        self.catch_up_with_main(workspace_id)
        plan = build_plan(
            changes,
            workspace.folder_schemas(),
            ViewsPlannerInputs(self.views, workspace_id),
            delete_page_size=batch_limits(workspace.connector).delete,
        )
        pipeline = PublishPipeline(
            pipeline_id=self.new_id(),
            workspace_id=workspace_id,
            user=user,
            main_version=workspace.main_version,
            draft_version=0 if draft is None else draft.version,
            phases=plan.phases(),
            on_upstream_change=on_upstream_change,
            trace_id=log_context.trace_id.get(),
        )
        pipeline.plan_entries(list(plan.entries))
        self.save_all(pipeline)
        self._cache(pipeline)
        log.info(
            "planned pipeline %s of %s's draft: %d entries",
            pipeline.pipeline_id,
            user,
            len(pipeline.entries),
            extra={"pipeline_id": pipeline.pipeline_id},
        )
        return pipeline

    def pipeline(self, pipeline_id: str) -> PublishPipeline:
        pipeline = self.load(pipeline_id, PublishPipeline)
        if pipeline is None:
            raise NotFound(f"pipeline {pipeline_id} does not exist")
        return pipeline

    def request_run(self, pipeline_id: str) -> PublishPipeline:
        """Take the workspace lock and queue the pipeline for a worker.

        Refused as stale when main or the draft moved since planning (a planned
        pipeline then ends in state ``stale``); as ``publish_in_progress`` when
        another pipeline holds the lock.
        """

        def command() -> PublishPipeline:
            pipeline = self.pipeline(pipeline_id)
            workspace = self.workspace(pipeline.workspace_id)
            draft = self.draft(pipeline.workspace_id, pipeline.user)
            try:
                pipeline.request_run(
                    main_version=workspace.main_version,
                    draft_version=0 if draft is None else draft.version,
                )
            except StalePlan:
                self.save_all(pipeline)  # the plan's PipelineStale, if it had never run
                raise
            workspace.acquire_publish_lock(pipeline_id)
            self.save_all(pipeline, workspace)
            return pipeline

        pipeline = self._retrying_lock(command)
        log.info("run of pipeline %s requested", pipeline_id, extra={"pipeline_id": pipeline_id})
        return pipeline

    def publish(
        self,
        workspace_id: str,
        user: str,
        *,
        on_upstream_change: UpstreamPolicy = UpstreamPolicy.FAIL,
    ) -> PublishPipeline:
        """Plan the draft and queue the run at once.

        Refused before planning while the workspace publishes or pulls, or every
        refused publish would leave a planned pipeline behind. (A lock taken
        between this check and the run request still does; the check is cheap.)
        """
        workspace = self.workspace(workspace_id)
        workspace.ensure_not_publishing()
        workspace.ensure_not_pulling()
        planned = self.plan(workspace_id, user, on_upstream_change=on_upstream_change)
        return self.request_run(planned.pipeline_id)

    def _retrying_lock(self, command: Callable[[], R]) -> R:
        """A lost race for the workspace lock surfaces as publish_in_progress."""
        try:
            return self.retrying(command)
        except WriteConflict:
            raise PublishInProgress("another command is publishing in this workspace") from None

    def request_retry(self, pipeline_id: str) -> PublishPipeline:
        def command() -> PublishPipeline:
            pipeline = self.pipeline(pipeline_id)
            workspace = self.workspace(pipeline.workspace_id)
            pipeline.request_retry(main_version=workspace.main_version)
            workspace.acquire_publish_lock(pipeline_id)
            self.save_all(pipeline, workspace)
            return pipeline

        return self._retrying_lock(command)

    def request_cancel(self, pipeline_id: str) -> PublishPipeline:
        def command() -> PublishPipeline:
            pipeline = self.pipeline(pipeline_id)
            pipeline.request_cancel()
            self.save_all(pipeline)
            return pipeline

        return self.retrying(command)

    # --- pulls ---------------------------------------------------------------
    def start_pull(
        self,
        workspace_id: str,
        folders: list[str] | None = None,
        *,
        paths: list[str] | None = None,
        records: list[tuple[str, str]] | None = None,
    ) -> Pull:
        """Record the pull and take the workspace's pull lock in one save; a worker runs it.

        Refused while a pipeline publishes (``publish_in_progress``) or another
        pull runs (``pull_in_progress``): two racing starts meet in optimistic
        concurrency on the workspace, and the retry finds the winner's lock.
        """
        if paths is not None:
            self.catch_up_with_main(workspace_id)
        chosen, scope = pull_scope(
            self.workspace(workspace_id), self.views, folders=folders, paths=paths, records=records
        )
        pull_id = self.new_id()

        def command() -> Pull:
            workspace = self.workspace(workspace_id)
            workspace.acquire_pull_lock(pull_id)
            pull = Pull(pull_id=pull_id, workspace_id=workspace_id, folders=chosen, scope=scope)
            self.save_all(pull, workspace)
            return pull

        return self.retrying(command)

    def start_refresh(self, workspace_id: str, user: str) -> Pull | None:
        """A targeted pull of every main record the user's draft touches (None: it touches none).

        A plan made after it starts from the service's current copies, so its
        diffs show what a colleague changed in the service meanwhile.
        """
        draft = self.draft(workspace_id, user)
        if draft is None or not draft.changes:
            return None
        self.catch_up_with_main(workspace_id)
        on_main = sorted(self.views.main_paths_exist(workspace_id, list(draft.changes)))
        return self.start_pull(workspace_id, paths=on_main) if on_main else None

    def pull(self, pull_id: str) -> Pull:
        pull = self.load(pull_id, Pull)
        if pull is None:
            raise NotFound(f"pull {pull_id} does not exist")
        return pull


__all__ = ["PublishdApplication"]
