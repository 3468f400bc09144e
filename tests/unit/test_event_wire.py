"""The wire form of stored events: the fast splice must say exactly what a full decode says."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infrastructure.postgres.feed.wire import WireEncoder

PIPELINE = "6f1c2d3e-0000-4000-8000-000000000001"
TS = {"_type_": "datetime_iso", "_data_": "2026-01-02T03:04:05.000006+00:00"}


def stored(fields: dict[str, Any], *, creation: bool = False) -> bytes:
    """As eventsourcing's JSON transcoder writes a state: timestamp first."""
    state: dict[str, Any] = {"timestamp": TS}
    if creation:
        state["originator_topic"] = "domain.pipeline:PublishPipeline"
    state.update(fields)
    return json.dumps(state, separators=(",", ":")).encode()


CASES = [
    (
        "domain.pipeline:PublishPipeline.EntryPlanned",
        {
            "path": "books/é.json",
            "phase": "create",
            "operation": {"type": "create", "folder": "books", "fields": {"t": 'a\nb"c'}},
            "deferred_fields": [],
            "depends_on": [],
        },
        False,
    ),
    (
        "domain.pipeline:PublishPipeline.PipelinePlanned",
        {
            "pipeline_id": PIPELINE,
            "workspace_id": "acme",
            "user": "ann",
            "main_version": 0,
            "draft_version": 1,
            "phases": [{"phase": "create", "entries": 1}],
        },
        True,
    ),
    ("domain.pipeline:PublishPipeline.CancelRequested", {}, False),
    ("domain.draft:Draft.DraftFileWritten", {"path": "a/b.json", "content": {"version": 3}}, False),
    ("domain.other:Thing.Clashing", {"version": "mine", "type": "mine", "x": 1}, False),
    ("domain.other:Thing.Typed", {"ref": {"_type_": "uuid_hex", "_data_": "0" * 32}}, False),
]


def expected(topic: str, fields: dict[str, Any]) -> dict[str, Any]:
    kind = topic.rsplit(".", 1)[-1]
    out: dict[str, Any] = {
        "type": kind,
        "timestamp": TS["_data_"],
        "position": 7,
        "version": 3,
        "originator_id": PIPELINE,
        "workspace": "acme",
    }
    if ":PublishPipeline." in topic:
        out["pipeline_id"] = PIPELINE
    for key, value in fields.items():
        out.setdefault(key, value)
    if kind == "Typed":
        out["ref"] = "00000000-0000-0000-0000-000000000000"
    return out


@pytest.mark.parametrize(("topic", "fields", "creation"), CASES)
def test_every_event_reads_the_same_on_the_wire(
    topic: str, fields: dict[str, Any], creation: bool
) -> None:
    encoder = WireEncoder()
    row = (7, PIPELINE, 3, topic, stored(fields, creation=creation))
    first = encoder.encode(row, "acme")  # learns the topic's shape
    second = encoder.encode(row, "acme")  # takes the fast path where it is exact
    assert json.loads(first.text) == json.loads(second.text) == expected(topic, fields)
    assert first.sse("version") == second.sse("version")
    assert second.sse("version").startswith(f"id: 3\nevent: {first.type}\ndata: {{".encode())
    assert second.sse("position").startswith(b"id: 7\n")
    assert second.ndjson().count(b"\n") == 1  # one line per event, whatever the content


def test_a_state_that_is_not_json_still_yields_an_event() -> None:
    event = WireEncoder().encode((1, PIPELINE, 1, "x:Y.Broken", b"\xff not json"), None)
    assert event.data["type"] == "Broken"
    assert event.data["workspace"] is None


@pytest.mark.parametrize("kind", ["WorkspaceCreated", "ConnectorChanged"])
def test_a_secret_recorded_before_configs_were_checked_is_not_served(kind: str) -> None:
    connector = {
        "type": "sandbox",
        "base_url": "http://ann:hunter2@cms.example:9100/api/?key=abc",
        "token": "s3cret",
    }
    fields = {"workspace_id": "acme", "connector": connector}
    row = (7, PIPELINE, 1, f"domain.workspace:Workspace.{kind}", stored(fields))
    served = WireEncoder().encode(row, "acme").ndjson()
    assert b"hunter2" not in served and b"s3cret" not in served and b"key=abc" not in served
    assert json.loads(served)["connector"] == {
        "type": "sandbox",
        "base_url": "http://cms.example:9100/api/",
    }
