"""The projections' page query names events in SQL by the rule the streams use in Python."""

from __future__ import annotations

from application.projections.events import event_name
from infrastructure.postgres.database import Database

TOPICS = [
    "domain.pipeline:PublishPipeline.EntryPublished",
    "domain.workspace:Workspace.MainChanged",
    "domain.draft:Draft.DraftStarted",
    "module:Created",
    "NoDots",
    "a.b",
]


def test_split_part_of_a_topic_is_its_event_name(database: Database) -> None:
    with database.connect() as conn:
        rows = conn.execute(
            "SELECT t, split_part(t, '.', -1) FROM unnest(%s::text[]) AS t", (TOPICS,)
        ).fetchall()
    assert {topic: name for topic, name in rows} == {topic: event_name(topic) for topic in TOPICS}
