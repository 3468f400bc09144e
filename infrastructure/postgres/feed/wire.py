"""Stored events in the one form every stream sends: wire JSON built once per event.

The wire object is ``{"type", "timestamp", "position", "version",
"originator_id", "workspace", ["pipeline_id",] ...the event's fields}``.

Building it must be cheap: a replay streams tens of thousands of events a
second, and a fan-out sends each event to many clients. Decoding every stored
state into Python objects and encoding it again costs several times more than
reading the row, so the usual path splices: eventsourcing stores an event as
``{"timestamp": {typed iso}, ["originator_topic": ...,] fields...}`` and the
fields' JSON text is copied as it is, behind our own keys. The splice is only
taken when it is exact: the state has that shape, holds no other typed value,
and the event type's top-level fields (learnt once per topic, by decoding its
first event) do not clash with our keys. Anything else is decoded and encoded
in full, with the same result.

Replayed and live events go through this one function, so they are identical on
the wire; each event's frames are cached, so a fan-out encodes it once. An
event's name, timestamp and fields are read by the same rules as the
projections read them (``application.projections.events``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from application.projections.events import event_name, plain_fields
from domain.connector_config import public_connector

TERMINAL_PIPELINE_EVENTS = frozenset(
    {"PipelineCompleted", "PipelineFailed", "PipelineCancelled", "PipelineStale"}
)
"""A pipeline stream closes after one of these (a later retry continues the same stream)."""

PIPELINE_TOPIC_MARK = ":PublishPipeline."
_INTERNAL_FIELDS = frozenset({"originator_topic", "timestamp"})
_OUR_KEYS = frozenset(
    {"type", "timestamp", "position", "version", "originator_id", "workspace", "pipeline_id"}
)
_CLASHING = _OUR_KEYS - {"timestamp"}  # the stored timestamp is the one we send
_STORED_HEAD = re.compile(
    rb'\{"timestamp":\{"_type_":"datetime_iso","_data_":"([^"\\]*)"\}'
    rb'(?:,"originator_topic":"[^"\\]*")?(?=[,}])'
)

Row = tuple[int, str, int, str, bytes]
"""``(notification_id, originator_id::text, originator_version, topic, state)`` as selected."""

StreamId = Literal["version", "position"]


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@dataclass(slots=True, eq=False)
class FeedEvent:
    position: int
    originator_id: str
    version: int
    type: str
    workspace: str | None
    text: bytes
    """The wire JSON object, UTF-8."""
    keep_frames: bool = True
    """Whether frames are cached: worth it for a live event sent to many, not for a replay's."""
    _frames: dict[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def is_terminal(self) -> bool:
        return self.type in TERMINAL_PIPELINE_EVENTS

    @property
    def data(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self.text)
        return decoded

    def sse(self, stream_id: StreamId) -> bytes:
        """One SSE frame; ``id:`` is the pipeline version or the global position."""
        frame = self._frames.get(stream_id)
        if frame is None:
            ident = self.version if stream_id == "version" else self.position
            frame = b"id: %d\nevent: %s\ndata: %s\n\n" % (ident, self.type.encode(), self.text)
            if self.keep_frames:
                self._frames[stream_id] = frame
        return frame

    def ndjson(self) -> bytes:
        return self.text + b"\n"


_CONNECTOR_EVENTS = frozenset({"WorkspaceCreated", "ConnectorChanged"})
"""Events carrying a connector config: served as ``public_connector`` shows it."""


class WireEncoder:
    """Rows to FeedEvents; remembers per topic whether the fast splice is exact."""

    def __init__(self) -> None:
        self._splice_ok: dict[str, bool] = {}

    def encode(self, row: Row, workspace: str | None) -> FeedEvent:
        position, originator_id, version, topic, _ = row
        kind = event_name(topic)
        pipeline = PIPELINE_TOPIC_MARK in topic
        text = None if kind in _CONNECTOR_EVENTS else self._spliced(row, kind, workspace, pipeline)
        if text is None:
            text = self._recoded(row, kind, workspace, pipeline)
        return FeedEvent(position, originator_id, version, kind, workspace, text)

    def _spliced(self, row: Row, kind: str, workspace: str | None, pipeline: bool) -> bytes | None:
        position, originator_id, version, topic, state = row
        ok = self._splice_ok.get(topic)
        if ok is None:
            ok = self._splice_ok[topic] = not plain_fields(state).keys() & _CLASHING
        if not ok:
            return None
        head = _STORED_HEAD.match(state)
        if head is None:
            return None
        rest = state[head.end() :]
        if b'"_type_"' in rest:
            return None
        return (
            b'{"type":"%s","timestamp":"%s","position":%d,"version":%d,'
            b'"originator_id":"%s","workspace":%s%s%s'
            % (
                kind.encode(),
                head.group(1),
                position,
                version,
                originator_id.encode(),
                _encode(workspace).encode(),
                b',"pipeline_id":"%s"' % originator_id.encode() if pipeline else b"",
                rest,
            )
        )

    def _recoded(self, row: Row, kind: str, workspace: str | None, pipeline: bool) -> bytes:
        position, originator_id, version, _, state = row
        fields = plain_fields(state)
        timestamp = fields.get("timestamp")
        data: dict[str, Any] = {
            "type": kind,
            "timestamp": timestamp if isinstance(timestamp, str) else None,
            "position": position,
            "version": version,
            "originator_id": originator_id,
            "workspace": workspace,
        }
        if pipeline:
            data["pipeline_id"] = originator_id
        for key, value in fields.items():
            if key not in data and key not in _INTERNAL_FIELDS:
                data[key] = value
        if kind in _CONNECTOR_EVENTS:
            data["connector"] = public_connector(data.get("connector"))
        return _encode(data).encode()
