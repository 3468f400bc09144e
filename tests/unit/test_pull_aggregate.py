"""The pull's decisions (leases, pages in turn, the end) and the workspace's two locks."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent

from application.app import PublishdApplication
from domain.errors import IllegalTransition, LeaseLost, PublishInProgress, PullInProgress
from domain.pull import Pull
from domain.workspace import Workspace

NOW = datetime(2026, 1, 1, tzinfo=UTC)
LEASE = timedelta(seconds=30)


def started(folders: list[str] | None = None) -> Pull:
    return Pull(pull_id=str(uuid.uuid4()), workspace_id="ws", folders=folders or ["books"])


def test_the_pull_lock_excludes_pipelines_and_other_pulls() -> None:
    workspace = Workspace(workspace_id="ws", connector={"type": "sandbox"})
    workspace.acquire_pull_lock("pull-1")
    workspace.acquire_pull_lock("pull-1")  # idempotent for the holder (a resumed pull)
    with pytest.raises(PullInProgress) as refused:
        workspace.acquire_pull_lock("pull-2")
    assert refused.value.details == {"pull_id": "pull-1"}
    with pytest.raises(PullInProgress):
        workspace.acquire_publish_lock("pipeline-1")
    with pytest.raises(PullInProgress):
        workspace.change_connector({"type": "sandbox", "base_url": "http://elsewhere"})
    workspace.release_pull_lock("pull-2")  # not the holder: nothing happens
    assert workspace.pulling == "pull-1"
    workspace.release_pull_lock("pull-1")
    workspace.acquire_publish_lock("pipeline-1")
    with pytest.raises(PublishInProgress):
        workspace.acquire_pull_lock("pull-2")
    assert [type(e).__name__ for e in workspace.collect_events()][1:] == [
        "PullLockAcquired",
        "PullLockReleased",
        "PublishLockAcquired",
    ]


def test_a_lease_is_exclusive_until_it_expires() -> None:
    pull = started()
    pull.claim("w1", NOW, LEASE)
    with pytest.raises(LeaseLost):
        pull.claim("w2", NOW + LEASE / 2, LEASE)
    assert not pull.runnable(NOW + LEASE / 2)
    pull.claim("w1", NOW + LEASE / 2, LEASE)  # renewed
    assert not pull.runnable(NOW + LEASE)
    pull.claim("w2", NOW + 2 * LEASE, LEASE)
    names = [(type(e).__name__, getattr(e, "previous", None)) for e in pull.collect_events()]
    assert names[1:] == [("PullClaimed", None), ("PullLeaseRenewed", None), ("PullClaimed", "w1")]
    assert pull.lease_owner == "w2"


def test_pages_are_recorded_by_the_holder_in_turn_and_the_pull_ends_once() -> None:
    pull = started(["authors", "books"])
    with pytest.raises(LeaseLost):
        pull.record_page("w1", "books", 0, {}, offset=0, listed=[], done=True)
    pull.claim("w1", NOW, LEASE)
    pull.record_page("w1", "books", 0, {"created": 2}, offset=0, listed=["b1", "b2"], done=False)
    with pytest.raises(IllegalTransition):  # the same page again would count it twice
        pull.record_page("w1", "books", 0, {"created": 2}, offset=0, listed=["b1"], done=False)
    with pytest.raises(IllegalTransition):
        pull.record_page("w1", "menus", 0, {}, offset=0, listed=[], done=True)
    pull.record_page("w1", "books", 1, {"unchanged": 1}, offset=2, listed=["b3"], done=True)
    with pytest.raises(IllegalTransition):  # authors not pulled yet
        pull.complete("w1")
    pull.record_page("w1", "authors", 0, {"deleted": 1}, offset=0, listed=[], done=True)
    progress = pull.folder_progress("books")
    assert (progress.pages, progress.next_offset, progress.listed, progress.done) == (
        2,
        3,
        {"b1", "b2", "b3"},
        True,
    )
    with pytest.raises(LeaseLost):
        pull.complete("w2")
    pull.complete("w1")
    assert pull.state == "completed" and pull.lease_owner is None
    assert pull.counts == {"created": 2, "updated": 0, "unchanged": 1, "deleted": 1}
    with pytest.raises(IllegalTransition):
        pull.fail("w1", "late")
    with pytest.raises(IllegalTransition):
        pull.claim("w1", NOW, LEASE)


def test_a_targeted_pulls_scope_names_its_records() -> None:
    scope = {"records": [{"folder": "books", "record_id": "b1"}]}
    pull = Pull(pull_id=str(uuid.uuid4()), workspace_id="ws", folders=["books"], scope=scope)
    assert pull.records == [("books", "b1")]
    assert started().records is None and started().scope == {"folders": ["books"]}


def test_a_stream_recorded_before_scopes_and_leases_replays() -> None:
    """The events as the code before durable pulls stored them: no scope, no listed ids."""
    app = PublishdApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    pull_id = uuid.UUID(int=7)
    stamp = {"_type_": "datetime_iso", "_data_": NOW.isoformat()}
    states: list[tuple[str, dict[str, Any]]] = [
        (
            "PullStarted",
            {
                "originator_topic": "domain.pull:Pull",
                "pull_id": str(pull_id),
                "workspace_id": "ws",
                "folders": ["books"],
            },
        ),
        ("PullPageProcessed", {"folder": "books", "page": 0, "counts": {"created": 3}}),
        ("PullCompleted", {"counts": {"created": 3}}),
    ]
    pull = None
    for version, (name, state) in enumerate(states, start=1):
        stored = StoredEvent(
            originator_id=pull_id,
            originator_version=version,
            topic=f"domain.pull:Pull.{name}",
            state=json.dumps({**state, "timestamp": stamp}).encode(),
        )
        pull = app.mapper.to_domain_event(stored).mutate(pull)
    assert isinstance(pull, Pull)
    assert pull.scope == {"folders": ["books"]} and pull.state == "completed"
    assert pull.counts == {"created": 3, "updated": 0, "unchanged": 0, "deleted": 0}
    assert pull.lease_owner is None and pull.folder_progress("books").pages == 1
