"""A projection and a stream read a stored event alike: its name, its timestamp, its workspace.

Events come from the real aggregates through eventsourcing's JSON transcoder;
each is read once the way the projections read it (``decode``) and once the
way the streams send it (``WireEncoder``).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, Mapper, UUIDAsHex

from application.projections import PROJECTION_NAMES
from application.projections.events import decode, event_name, plain_fields, workspace_named
from domain.draft import Draft
from domain.pipeline import PublishPipeline
from domain.plan import PlanEntry
from domain.schema import FolderSchema
from domain.workspace import Workspace
from infrastructure.postgres.feed.wire import WireEncoder
from infrastructure.postgres.projections.registry import PROJECTIONS
from infrastructure.postgres.projections.tables import VIEW_TABLES


def _mapper() -> Mapper[Any]:
    transcoder = JSONTranscoder()
    transcoder.register(UUIDAsHex())
    transcoder.register(DatetimeAsISO())
    return Mapper(transcoder=transcoder)


def _aggregates() -> list[Aggregate]:
    ws = Workspace("lib", {})
    ws.register_schema(FolderSchema.from_dict("books", {}))
    draft = Draft("lib", "ann")
    draft.write_file("books/a.json", {"title": "A"})
    pipeline = PublishPipeline(
        str(uuid.uuid4()), "lib", "ann", 0, 1, [{"phase": "create", "entries": 1}]
    )
    pipeline.plan_entries([PlanEntry("books/a.json", "create", {})])
    return [ws, draft, pipeline]


def test_projections_and_streams_name_time_and_place_every_event_alike() -> None:
    mapper, encoder = _mapper(), WireEncoder()
    position = 0
    for aggregate in _aggregates():
        workspace: str | None = None
        for domain_event in aggregate.collect_events():
            position += 1
            stored = mapper.to_stored_event(domain_event)
            originator = str(stored.originator_id)
            if stored.originator_version == 1:
                workspace = workspace_named(plain_fields(stored.state))
            name = event_name(stored.topic)
            projected = decode(position, originator, stored.originator_version, name, stored.state)
            row = (position, originator, stored.originator_version, stored.topic, stored.state)
            wire = json.loads(encoder.encode(row, workspace).text)
            assert wire["type"] == projected.name == type(domain_event).__name__
            assert wire["timestamp"] == projected.timestamp == domain_event.timestamp.isoformat()
            assert wire["workspace"] == workspace == "lib"


def test_every_view_table_belongs_to_exactly_one_projection() -> None:
    owned = [table for registered in PROJECTIONS.values() for table in registered.tables]
    assert sorted(owned) == sorted(VIEW_TABLES)
    assert tuple(PROJECTIONS) == PROJECTION_NAMES
