"""The aggregates' state machines: every legal transition works, every illegal one raises."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from domain.calls import BatchLimits
from domain.draft import Draft
from domain.errors import IllegalTransition, LeaseLost, NotFound, PublishInProgress, StalePlan
from domain.pipeline import PublishPipeline
from domain.plan import Phase, PlanEntry
from domain.pull import Pull
from domain.schema import FolderSchema
from domain.states import TRANSITIONS, PipelineState
from domain.workspace import MainChange, Workspace

PLANNED, RUNNING, STALE = PipelineState.PLANNED, PipelineState.RUNNING, PipelineState.STALE
COMPLETED, FAILED = PipelineState.COMPLETED, PipelineState.FAILED
COMPLETED_WITH_ERRORS, CANCELLED = PipelineState.COMPLETED_WITH_ERRORS, PipelineState.CANCELLED

NOW = datetime(2026, 1, 1, tzinfo=UTC)
LEASE = timedelta(seconds=30)
W = "worker-1"
LIMITS = BatchLimits(create=100, update=100, delete=100)
EDIT = PlanEntry(
    "books/a.json",
    "edit",
    {"type": "update", "folder": "books", "record_id": "r1", "fields": {"t": 1}},
)
CREATE = PlanEntry("books/b.json", "create", {"type": "create", "folder": "books", "fields": {}})
BACKFILL = PlanEntry(
    "books/b.json",
    "backfill",
    {"type": "update", "folder": "books", "record_id": None, "fields": {}},
    depends_on=("create:books/b.json",),
)


def planned() -> PublishPipeline:
    pipeline = PublishPipeline(
        pipeline_id=str(uuid.uuid4()),
        workspace_id="ws",
        user="u",
        main_version=1,
        draft_version=1,
        phases=[
            {"phase": "edit", "entries": 1},
            {"phase": "create", "entries": 1},
            {"phase": "backfill", "entries": 1},
        ],
    )
    pipeline.plan_entries([EDIT, CREATE, BACKFILL])
    return pipeline


def request_run(pipeline: PublishPipeline) -> None:
    """Run with main and the draft where the plan left them."""
    pipeline.request_run(main_version=pipeline.last_main_version, draft_version=1)


def request_retry(pipeline: PublishPipeline) -> None:
    pipeline.request_retry(main_version=pipeline.last_main_version)


def running() -> PublishPipeline:
    pipeline = planned()
    request_run(pipeline)
    pipeline.claim(W, NOW, LEASE)
    return pipeline


def finish_all(pipeline: PublishPipeline, *, fail_create: bool = False) -> PublishPipeline:
    for phase, entry in (("edit", EDIT), ("create", CREATE), ("backfill", BACKFILL)):
        pipeline.start_phase(W, phase)
        pipeline.dispatch(W, entry.key, f"key-{entry.key}")
        if fail_create and phase == "create":
            pipeline.fail_entry(W, entry.key, "400: bad")
        elif fail_create and phase == "backfill":
            pipeline.skip_entry(W, entry.key, "depends on create:books/b.json, which failed")
        else:
            pipeline.publish_entry(W, entry.key, "r1" if phase != "create" else "r2", {}, 2)
        pipeline.complete_phase(W, phase)
    pipeline.finish(W)
    return pipeline


def failed() -> PublishPipeline:
    pipeline = running()
    pipeline.fail(W, "service unreachable")
    return pipeline


def cancelled() -> PublishPipeline:
    pipeline = planned()
    pipeline.request_cancel()
    return pipeline


def stale() -> PublishPipeline:
    pipeline = planned()
    pipeline.mark_stale("main moved")
    return pipeline


STATES: dict[str, Callable[[], PublishPipeline]] = {
    PLANNED: planned,
    RUNNING: running,
    COMPLETED: lambda: finish_all(running()),
    COMPLETED_WITH_ERRORS: lambda: finish_all(running(), fail_create=True),
    FAILED: failed,
    CANCELLED: cancelled,
    STALE: stale,
}
COMMANDS: dict[str, Callable[[PublishPipeline], None]] = {
    "run": request_run,
    "retry": request_retry,
    "mark_stale": lambda p: p.mark_stale("moved"),
    "cancel": lambda p: p.request_cancel(),
    "claim": lambda p: p.claim("worker-2", NOW + 2 * LEASE, LEASE),
    "work": lambda p: p.start_phase(W, "edit"),
}
EXPECTED_STATE = {"run": RUNNING, "retry": RUNNING, "mark_stale": STALE}


def test_the_fixtures_reach_the_states_they_name() -> None:
    assert {name: make().state for name, make in STATES.items()} == {s: s for s in STATES}


@pytest.mark.parametrize("state", sorted(STATES))
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_in_every_state(command: str, state: str) -> None:
    pipeline = STATES[state]()
    if state in TRANSITIONS[command]:
        COMMANDS[command](pipeline)
        if command in EXPECTED_STATE:
            assert pipeline.state == EXPECTED_STATE[command]
        if command == "cancel":
            assert pipeline.state == CANCELLED if state == PLANNED else pipeline.cancel_requested
        if command == "claim":
            assert pipeline.lease_owner == "worker-2"
    else:
        with pytest.raises(IllegalTransition):
            COMMANDS[command](pipeline)
        assert pipeline.state == state


def test_a_live_lease_refuses_another_worker_and_fences_recording() -> None:
    pipeline = running()
    with pytest.raises(LeaseLost):
        pipeline.claim("worker-2", NOW + LEASE / 2, LEASE)
    pipeline.claim("worker-2", NOW + 2 * LEASE, LEASE)
    with pytest.raises(LeaseLost):
        pipeline.start_phase(W, "edit")


def test_entries_close_once_and_phases_complete_only_when_closed() -> None:
    pipeline = running()
    pipeline.start_phase(W, "edit")
    with pytest.raises(IllegalTransition):
        pipeline.complete_phase(W, "edit")
    pipeline.dispatch(W, EDIT.key, "k")
    pipeline.publish_entry(W, EDIT.key, "r1", {"id": "r1"}, 2)
    with pytest.raises(IllegalTransition):
        pipeline.fail_entry(W, EDIT.key, "late")
    pipeline.complete_phase(W, "edit")
    assert pipeline.completed_phases == ["edit"]
    with pytest.raises(IllegalTransition):
        pipeline.finish(W)


def test_retry_reopens_failed_and_skipped_entries_with_a_new_attempt() -> None:
    pipeline = finish_all(running(), fail_create=True)
    assert pipeline.published_paths() == ["books/a.json"]
    request_retry(pipeline)
    assert pipeline.state == RUNNING and pipeline.attempt == 1
    assert pipeline.phase_counts("create")["planned"] == 1
    assert "create" not in pipeline.completed_phases


def test_replaying_the_events_rebuilds_the_same_state() -> None:
    pipeline = finish_all(running(), fail_create=True)
    events = pipeline.collect_events()
    copy = None
    for domain_event in events:
        copy = domain_event.mutate(copy)
    assert isinstance(copy, PublishPipeline)
    assert copy.state == pipeline.state and copy.entries == pipeline.entries


def test_a_copy_is_independent_of_the_pipeline_it_was_copied_from() -> None:
    """The repository hands commands a deepcopy of its cached aggregate: a command
    on the copy (even one whose save then fails) must leave the cached one as it was."""
    original = planned()
    request_run(original)
    original.collect_events()
    before = {key: copy.copy(entry) for key, entry in original.entries.items()}
    clone = copy.deepcopy(original)
    assert clone.entries == original.entries and clone.version == original.version

    clone.claim(W, NOW, LEASE)
    clone.start_phase(W, "edit")
    clone.dispatch(W, "edit:books/a.json", "key-1")
    clone.publish_entry(W, "edit:books/a.json", "r1", {"t": 1}, 2)
    clone.fail_entry(W, "create:books/b.json", "boom")

    assert original.entries == before
    assert original.version < clone.version and original.lease_owner is None
    assert original.phase is None and original.last_main_version == 1
    assert not original.collect_events()
    assert len(clone.collect_events()) == 5


# --- workspace, draft, pull -----------------------------------------------------------


def test_the_workspace_lock_admits_one_pipeline() -> None:
    workspace = Workspace(workspace_id="ws", connector={"type": "sandbox"})
    workspace.acquire_publish_lock("p1")
    workspace.acquire_publish_lock("p1")  # idempotent for the holder
    with pytest.raises(PublishInProgress):
        workspace.acquire_publish_lock("p2")
    with pytest.raises(PublishInProgress):
        workspace.change_connector({"type": "sandbox", "base_url": "http://x"})
    workspace.release_publish_lock("p2")  # not the holder: nothing happens
    assert workspace.publishing == "p1"
    workspace.release_publish_lock("p1")
    workspace.acquire_publish_lock("p2")
    assert workspace.publishing == "p2"


def test_main_changes_move_the_main_version_and_schemas_register() -> None:
    workspace = Workspace(workspace_id="ws", connector={"type": "sandbox"})
    workspace.register_schema(FolderSchema("books"))
    assert workspace.change_main("pull:x", []) == 0
    assert workspace.change_main("pull:x", [MainChange("books/a.json", {}, "r")]) == 1
    assert workspace.schema("books") == FolderSchema.from_dict(
        "books", FolderSchema("books").to_dict()
    )


def test_draft_changes_deletes_reverts_and_rebase() -> None:
    draft = Draft(workspace_id="ws", user="u")
    draft.write_file("books/a.json", {"t": 1})
    draft.write_file("books/a.json", {"t": 1})  # same content: no event
    assert draft.version == 2
    draft.delete_file("books/main.json", on_main=True)
    draft.delete_file("books/a.json", on_main=False)  # an added file is dropped
    with pytest.raises(NotFound):
        draft.delete_file("books/nowhere.json", on_main=False)
    assert draft.changes == {"books/main.json": None}
    draft.write_file("books/c.json", {"t": 3})
    planned = dict(draft.changes)
    draft.rebase("p1", ["books/main.json", "books/other.json"], planned)
    assert draft.changes == {"books/c.json": {"t": 3}}
    draft.discard()
    assert draft.changes == {}


def test_rebase_keeps_a_path_written_again_since_the_plan() -> None:
    draft = Draft(workspace_id="ws", user="u")
    draft.write_file("books/a.json", {"t": 1})
    draft.write_file("books/b.json", {"t": 1})
    draft.delete_file("books/c.json", on_main=True)
    planned = dict(draft.changes)
    draft.write_file("books/a.json", {"t": 2})  # during the run
    draft.write_file("books/b.json", {"t": 9})
    draft.write_file("books/b.json", {"t": 1})  # and back: exactly what was planned
    draft.rebase("p1", ["books/a.json", "books/b.json", "books/c.json"], planned)
    assert draft.changes == {"books/a.json": {"t": 2}}


def test_a_draft_records_a_change_that_only_json_types_tell_apart() -> None:
    draft = Draft(workspace_id="ws", user="u")
    draft.write_file("books/a.json", {"inPrint": 1, "flags": [0]})
    draft.write_file("books/a.json", {"inPrint": True, "flags": [0]})  # 1 == True in Python
    draft.write_file("books/a.json", {"inPrint": True, "flags": [False]})
    draft.write_file("books/a.json", {"inPrint": True, "flags": [False]})  # same: no event
    draft.write_file("books/a.json", {"inPrint": 1.0, "flags": [False]})
    draft.write_file("books/a.json", {"inPrint": 1, "flags": [False]})  # the same number
    assert draft.version == 5
    assert draft.changes["books/a.json"] == {"inPrint": 1.0, "flags": [False]}


def test_a_pull_counts_pages_and_ends_once() -> None:
    pull = Pull(pull_id=str(uuid.uuid4()), workspace_id="ws", folders=["books"])
    pull.claim(W, NOW, LEASE)
    pull.record_page(
        W, "books", 0, {"created": 2, "unchanged": 1}, offset=0, listed=["a", "b", "c"], done=False
    )
    pull.record_page(W, "books", 1, {"deleted": 1}, offset=3, listed=[], done=True)
    pull.complete(W)
    assert pull.counts == {"created": 2, "updated": 0, "unchanged": 1, "deleted": 1}
    with pytest.raises(IllegalTransition):
        pull.fail(W, "late")


# --- the pipeline's decisions of staleness, skips and calls --------------------------


def test_a_plan_is_stale_when_main_or_the_draft_moved_and_ends_stale() -> None:
    for main_version, draft_version, moved in ((2, 1, "main moved"), (1, 2, "the draft moved")):
        pipeline = planned()
        pipeline.collect_events()
        with pytest.raises(StalePlan, match=moved):
            pipeline.request_run(main_version=main_version, draft_version=draft_version)
        assert pipeline.state == STALE
        assert [type(e).__name__ for e in pipeline.collect_events()] == ["PipelineStale"]


def test_a_failed_run_resumes_after_draft_edits_but_not_after_main_moved() -> None:
    pipeline = failed()
    with pytest.raises(StalePlan, match="main moved from version 1 to 3"):
        pipeline.request_run(main_version=3, draft_version=1)
    assert pipeline.state == FAILED
    pipeline.request_run(main_version=1, draft_version=7)  # the draft no longer counts
    assert pipeline.state == RUNNING


def test_a_retry_is_refused_when_main_moved_and_records_nothing() -> None:
    pipeline = finish_all(running(), fail_create=True)
    pipeline.collect_events()
    with pytest.raises(StalePlan):
        pipeline.request_retry(main_version=pipeline.last_main_version + 1)
    assert pipeline.state == COMPLETED_WITH_ERRORS and not pipeline.collect_events()


def test_a_call_is_blocked_by_a_dependency_that_failed_or_was_skipped() -> None:
    pipeline = running()
    pipeline.start_phase(W, Phase.CREATE)
    pipeline.fail_entry(W, CREATE.key, "400: bad")
    [[backfill]] = pipeline.open_calls(Phase.BACKFILL, LIMITS)
    reason = "depends on create:books/b.json, which failed"
    assert pipeline.blocked_by(backfill) == ([(backfill.keys[0], reason)], None)
    [[edit]] = pipeline.open_calls(Phase.EDIT, LIMITS)
    assert pipeline.blocked_by(edit) == ([], edit)


def test_a_calls_intent_is_one_event_and_replays_into_every_entry_of_it() -> None:
    pipeline = running()
    pipeline.start_phase(W, Phase.EDIT)
    [[edit]] = pipeline.open_calls(Phase.EDIT, LIMITS)
    pipeline.dispatch_call(W, edit)
    pipeline.dispatch_call(W, edit)  # already dispatched: nothing more to record
    events = pipeline.collect_events()
    names = [type(e).__name__ for e in events]
    assert names[-1] == "CallDispatched" and names.count("CallDispatched") == 1
    replayed = None
    for event in events:
        replayed = event.mutate(replayed)
    assert isinstance(replayed, PublishPipeline)
    entry = replayed.entries[edit.keys[0]]
    assert (entry.status, entry.idempotency_key) == ("dispatched", edit.idempotency_key)


def test_deletes_share_a_call_per_page_and_dispatched_calls_keep_their_key() -> None:
    deletes = [
        PlanEntry(
            f"books/d{n}.json",
            Phase.DELETE,
            {"type": "delete", "folder": "books", "record_id": f"r{n}", "page": n // 4},
        )
        for n in range(6)
    ]
    pipeline = PublishPipeline(
        pipeline_id=str(uuid.uuid4()),
        workspace_id="ws",
        user="u",
        main_version=1,
        draft_version=1,
        phases=[{"phase": "delete", "entries": 6}],
    )
    pipeline.plan_entries(deletes)
    request_run(pipeline)
    pipeline.claim(W, NOW, LEASE)
    [calls] = pipeline.open_calls(Phase.DELETE, BatchLimits(delete=3))
    assert [len(c.keys) for c in calls] == [3, 1, 2]  # page 0 split at the page size
    assert len({c.idempotency_key for c in calls}) == 3
    for key in calls[1].keys:
        pipeline.dispatch(W, key, calls[1].idempotency_key)
    [again] = pipeline.open_calls(Phase.DELETE, BatchLimits(delete=3))
    assert again[0].keys == calls[1].keys and again[0].idempotency_key == calls[1].idempotency_key
    assert [c.idempotency_key for c in again[1:]] == [
        calls[0].idempotency_key,
        calls[2].idempotency_key,
    ]
