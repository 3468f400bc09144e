"""The projections' view of a recorded event: a name, an originator and plain JSON data.

Projections read rows straight from the events table and decode the JSON state
themselves instead of going through ``Mapper.to_domain_event``: rebuilding from
half a million events is dominated by decoding, and a projection needs the
plain fields, not a reconstructed domain event object.

Decoding uses msgspec. The events that carry files (``MainChanged``,
``DraftFileWritten``) are decoded by typed decoders that keep each file's
content as its JSON text (a ``Content``, never parsed into objects): the
content projections pass it through to their tables as it is, and only
FileReference parses the contents it reads pointers from (``parse_content``).
Building and freeing the objects of every content was most of a rebuild's
decoding time and memory. The one transcoded value every event carries is its
``timestamp`` (``{"_type_": "datetime_iso", ...}``); it is kept as its ISO
string, which PostgreSQL parses as it is, so a rebuild writes exactly the
timestamps that the live run wrote.

The rules for reading any stored event (its name from its topic, its
timestamp, the workspace its aggregate's first event names) live here too, and
the event streams (``infrastructure.postgres.feed``) read events by the same
rules, so a projection and a stream never disagree on what an event says.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

import msgspec

from domain.json_types import JsonObject

Content: TypeAlias = msgspec.Raw
"""A file's content as stored JSON text; ``parse_content`` turns it into objects."""


class ProjectedEvent(msgspec.Struct, frozen=True, gc=False):
    """(A msgspec Struct rather than a frozen dataclass: a rebuild makes half a million
    of them, and a frozen dataclass's ``__init__`` costs a Python-level
    ``object.__setattr__`` per field.)"""

    notification_id: int
    originator_id: str
    """The aggregate's UUID as text: the projections key their rows by it."""
    originator_version: int
    name: str
    """The event's class name (``MainChanged``), the last part of its topic."""
    timestamp: str
    """ISO 8601, as recorded: the only clock a projection may use."""
    data: JsonObject
    """The event's fields; in ``MainChanged`` only ``changes`` (``FileChange``s) and in
    ``DraftFileWritten`` only ``path`` and ``content`` (a ``Content`` or ``None``)."""
    may_refer: bool = True
    """Whether the stored JSON could hold an @-reference at all: without an ``@``
    (or its escape ``\\u0040``) anywhere in it, no content of the event is
    walked for @-references. (Looked for in the events that carry files only.)"""


class FileChange(msgspec.Struct, gc=False):
    """One file of a ``MainChanged``'s ``changes``: ``content`` is ``None`` for a removed file."""

    path: str
    if TYPE_CHECKING:
        content: Content | None
    else:
        # Decoded as JSON text; ``decode`` turns a ``null`` into ``None`` in place
        # (msgspec cannot decode into ``Raw | None``).
        content: msgspec.Raw = msgspec.Raw(b"null")
    record_id: str | None = None


class _Stamp(msgspec.Struct, gc=False):
    _data_: str


class _MainChanged(msgspec.Struct, gc=False):
    timestamp: _Stamp
    changes: list[FileChange]


class _FileWritten(msgspec.Struct, gc=False):
    timestamp: _Stamp
    path: str
    content: msgspec.Raw


_MAIN_CHANGED = msgspec.json.Decoder(_MainChanged)
_FILE_WRITTEN = msgspec.json.Decoder(_FileWritten)
_ANY = msgspec.json.Decoder()
_NULL = b"null"


def _content(raw: msgspec.Raw) -> Content | None:
    return None if len(raw) == 4 and bytes(raw) == _NULL else raw


def parse_content(content: Content) -> JsonObject:
    parsed: JsonObject = _ANY.decode(content)
    return parsed


def _may_refer(raw: bytes | str) -> bool:
    if isinstance(raw, str):
        return "@" in raw or "\\u0040" in raw
    return b"@" in raw or b"\\u0040" in raw


def event_name(topic: str) -> str:
    """``domain.pipeline:PublishPipeline.EntryPublished`` -> ``EntryPublished``.

    The rule of ``split_part(topic, '.', -1)``, by which the projections' page
    query names events in the database, so both sides agree on every topic.
    """
    return topic.rpartition(".")[2]


WORKSPACE_FIELD = "workspace_id"
"""The field by which an aggregate's first event names its workspace."""


def workspace_named(fields: Mapping[str, Any]) -> str | None:
    """The workspace an aggregate's creation event names (every aggregate's first event does)."""
    value = fields.get(WORKSPACE_FIELD)
    return value if isinstance(value, str) else None


def _plain_value(obj: dict[str, Any]) -> Any:
    """eventsourcing's typed JSON values (``{"_type_", "_data_"}``) as plain JSON."""
    if len(obj) == 2 and "_type_" in obj and "_data_" in obj:
        kind, data = obj["_type_"], obj["_data_"]
        if kind == "uuid_hex" and isinstance(data, str) and len(data) == 32:
            return f"{data[:8]}-{data[8:12]}-{data[12:16]}-{data[16:20]}-{data[20:]}"
        return data
    return obj


def plain_fields(state: bytes | str) -> dict[str, Any]:
    """A stored event's fields as plain JSON (UUIDs and datetimes as text).

    For readers that hand the fields on as they are, like the streams; an
    undecodable state yields no fields, so that one bad row cannot stall them.
    """
    try:
        decoded = json.loads(state, object_hook=_plain_value)
    except ValueError:
        return {}
    return decoded if isinstance(decoded, dict) else {}


def decode(
    notification_id: int,
    originator_id: str,
    originator_version: int,
    name: str,
    state: bytes | memoryview | str,
) -> ProjectedEvent:
    """Decode one stored event written by eventsourcing's ``JSONTranscoder``.

    ``name`` is the event's class name (``event_name`` of its topic).
    """
    raw = bytes(state) if isinstance(state, memoryview) else state
    data: dict[str, Any]
    may_refer = True
    if name == "MainChanged":
        main = _MAIN_CHANGED.decode(raw)
        timestamp = main.timestamp._data_
        for change in main.changes:
            if change.content is not None and _content(change.content) is None:
                change.content = None
        data = {"changes": main.changes}
        may_refer = _may_refer(raw)
    elif name == "DraftFileWritten":
        written = _FILE_WRITTEN.decode(raw)
        timestamp = written.timestamp._data_
        data = {"path": written.path, "content": _content(written.content)}
        may_refer = _may_refer(raw)
    else:
        data = _ANY.decode(raw)
        stamp = data.pop("timestamp", None)
        timestamp = stamp["_data_"] if isinstance(stamp, dict) else str(stamp)
    return ProjectedEvent(
        notification_id, originator_id, originator_version, name, timestamp, data, may_refer
    )
