"""The projections' view of a recorded event: a name, an originator and plain JSON data.

Projections read rows straight from the events table and decode the JSON state
themselves instead of going through ``Mapper.to_domain_event``: rebuilding from
half a million events is dominated by decoding, and a projection needs the
plain fields, not a reconstructed domain event object. orjson parses about
three times as fast as the json module here. The one transcoded value
every event carries is its ``timestamp`` (``{"_type_": "datetime_iso", ...}``);
it is kept as its ISO string, which PostgreSQL parses as it is, so a rebuild
writes exactly the timestamps that the live run wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson

from domain.json_types import JsonObject


@dataclass(frozen=True, slots=True)
class ProjectedEvent:
    notification_id: int
    originator_id: UUID
    originator_version: int
    name: str
    """The event's class name (``MainChanged``), the last part of its topic."""
    timestamp: str
    """ISO 8601, as recorded: the only clock a projection may use."""
    data: JsonObject
    may_refer: bool = True
    """Whether the stored JSON could hold an @-reference at all: without an ``@``
    (or its escape ``\\u0040``) anywhere in it, no content of the event is
    walked for @-references."""


def _may_refer(raw: bytes | str) -> bool:
    if isinstance(raw, str):
        return "@" in raw or "\\u0040" in raw
    return b"@" in raw or b"\\u0040" in raw


def event_name(topic: str) -> str:
    """``domain.pipeline:PublishPipeline.EntryPublished`` -> ``EntryPublished``."""
    return topic.rpartition(".")[2] if ":" in topic else topic


def decode(
    notification_id: int,
    originator_id: UUID,
    originator_version: int,
    topic: str,
    state: bytes | memoryview | str,
) -> ProjectedEvent:
    """Decode one stored event written by eventsourcing's ``JSONTranscoder``."""
    raw = bytes(state) if isinstance(state, memoryview) else state
    data: dict[str, Any] = orjson.loads(raw)
    stamp = data.pop("timestamp", None)
    timestamp = stamp["_data_"] if isinstance(stamp, dict) else str(stamp)
    return ProjectedEvent(
        notification_id,
        originator_id,
        originator_version,
        event_name(topic),
        timestamp,
        data,
        _may_refer(raw),
    )


def folder_and_filename(path: str) -> tuple[str, str]:
    """``site1/menus/main.json`` -> (``site1/menus``, ``main.json``)."""
    folder, _, filename = path.rpartition("/")
    return folder, filename
