"""Stored events in the one form every stream sends: decoded once, framed lazily.

The feed decodes each stored row once per process, however many subscribers
receive it; the JSON text and the SSE frames are cached on the event, so a
fan-out to a thousand clients serialises each event once, not a thousand times.
Replayed and live events go through the same decoder, which is what makes them
byte-for-byte identical on the wire.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

TERMINAL_PIPELINE_EVENTS = frozenset(
    {"PipelineCompleted", "PipelineFailed", "PipelineCancelled", "PipelineStale"}
)
"""A pipeline stream closes after one of these (a later retry continues the same stream)."""

PIPELINE_TOPIC_MARK = ":PublishPipeline."
PIPELINE_CREATED = "PipelinePlanned"
_INTERNAL_FIELDS = frozenset({"originator_topic", "timestamp"})

Row = tuple[int, UUID, int, str, bytes]
"""``(notification_id, originator_id, originator_version, topic, state)`` as selected."""

StreamId = Literal["version", "position"]


def _plain(obj: dict[str, Any]) -> Any:
    """Turn eventsourcing's typed JSON values (``{"_type_", "_data_"}``) into plain JSON."""
    if len(obj) == 2 and "_type_" in obj and "_data_" in obj:
        kind, data = obj["_type_"], obj["_data_"]
        if kind == "uuid_hex" and isinstance(data, str):
            return str(UUID(data))
        return data
    return obj


def decode_state(state: bytes) -> dict[str, Any]:
    """The event's fields; an undecodable state yields none rather than stalling the feed."""
    try:
        decoded = json.loads(state, object_hook=_plain)
    except ValueError:
        return {}
    return decoded if isinstance(decoded, dict) else {}


def event_type(topic: str) -> str:
    return topic.rsplit(".", 1)[-1]


def workspace_named(fields: dict[str, Any]) -> str | None:
    """The workspace a creation event names (every aggregate's first event does)."""
    value = fields.get("workspace_id")
    return value if isinstance(value, str) else None


_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@dataclass(slots=True, eq=False)
class FeedEvent:
    position: int
    originator_id: UUID
    version: int
    type: str
    workspace: str | None
    data: dict[str, Any]
    _text: str | None = field(default=None, repr=False)
    _frames: dict[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def is_terminal(self) -> bool:
        return self.type in TERMINAL_PIPELINE_EVENTS

    def json(self) -> str:
        if self._text is None:
            self._text = _json(self.data)
        return self._text

    def sse(self, stream_id: StreamId) -> bytes:
        """One SSE frame; ``id:`` is the pipeline version or the global position."""
        frame = self._frames.get(stream_id)
        if frame is None:
            ident = self.version if stream_id == "version" else self.position
            frame = f"id: {ident}\nevent: {self.type}\ndata: {self.json()}\n\n".encode()
            self._frames[stream_id] = frame
        return frame

    def ndjson(self) -> bytes:
        frame = self._frames.get("ndjson")
        if frame is None:
            frame = (self.json() + "\n").encode()
            self._frames["ndjson"] = frame
        return frame


def to_event(row: Row, fields: dict[str, Any], workspace: str | None) -> FeedEvent:
    """The wire dict: our keys first, then the event's own fields (ours win a clash)."""
    position, originator_id, version, topic, _ = row
    kind = event_type(topic)
    timestamp = fields.get("timestamp")
    data: dict[str, Any] = {
        "type": kind,
        "timestamp": timestamp if isinstance(timestamp, str) else None,
        "position": position,
        "version": version,
        "originator_id": str(originator_id),
        "workspace": workspace,
    }
    if PIPELINE_TOPIC_MARK in topic:
        data["pipeline_id"] = str(originator_id)
    for key, value in fields.items():
        if key not in data and key not in _INTERNAL_FIELDS:
            data[key] = value
    return FeedEvent(position, originator_id, version, kind, workspace, data)


class WorkspaceCache:
    """originator id -> workspace, learnt from creation events; bounded by halving."""

    def __init__(self, capacity: int = 200_000) -> None:
        self._capacity = capacity
        self._known: dict[UUID, str | None] = {}

    def __contains__(self, originator_id: UUID) -> bool:
        return originator_id in self._known

    def get(self, originator_id: UUID) -> str | None:
        return self._known.get(originator_id)

    def put(self, originator_id: UUID, workspace: str | None) -> None:
        if len(self._known) >= self._capacity:
            # dicts keep insertion order: forget the older half
            for key in list(self._known)[: self._capacity // 2]:
                del self._known[key]
        self._known[originator_id] = workspace
