"""Writing over a record only when nobody changed what the write replaces (API.md §4).

Main holds the service's record as publishd last saw it. Between that moment
and the run, a colleague may have edited the record in the service itself.
An update names main's version of the record (a conditional write, where the
service has one) and, when the service says the record moved on, reads it
and compares field by field: a field the entry writes that changed upstream
to something other than what the entry sends is a conflict, and the entry
fails with ``changed_upstream`` instead of silently replacing a colleague's
work. Changes upstream to other fields are no conflict: the write goes on
against the new version, and main takes the record the service returns.
"""

from __future__ import annotations

from application.connector import (
    Connector,
    ConnectorError,
    EntryRejected,
    PreconditionFailed,
    Record,
    TransientFailure,
)
from domain.json_types import JsonObject, JsonValue, json_equal

MAX_ATTEMPTS = 3
"""Conditional writes refused because of changes elsewhere in the record before giving up."""


class ChangedUpstream(ConnectorError):
    """The service's copy changed since main's copy in a field the entry writes."""

    code = "changed_upstream"


def version_of(record: JsonObject | Record, field: str) -> str | None:
    """A record's version token (``field``), as main holds it or the service returned it."""
    if isinstance(record, Record):
        value: JsonValue = record.computed.get(field, record.field_data.get(field))
    else:
        value = record.get(field)
    return value if isinstance(value, str) else None


def conflicts(
    sent: JsonObject, draft: JsonObject, main: JsonObject, upstream: Record
) -> list[JsonObject]:
    """Fields the write would change that changed upstream too, to something else.

    An upstream value equal to what is sent is no conflict: the service already
    holds the user's change (a resumed call that had gone through, say).
    """
    found = []
    for name, value in sent.items():
        theirs = upstream.field_data.get(name)
        ours = main.get(name)
        if not json_equal(theirs, ours) and not json_equal(theirs, value):
            found.append(
                {"field": name, "main": ours, "upstream": theirs, "draft": draft.get(name)}
            )
    return found


async def guarded_update(
    connector: Connector,
    folder: str,
    record_id: str,
    fields: JsonObject,
    idempotency_key: str,
    *,
    main: JsonObject,
    draft: JsonObject,
) -> Record:
    """Update ``fields`` unless upstream changed them since ``main``.

    ``fields`` are resolved (record ids), ``draft`` the same fields as planned.
    """
    field = connector.version_field
    if field is None:  # no conditional writes: look first
        upstream = await _read(connector, folder, record_id)
        _refuse(conflicts(fields, draft, main, upstream), folder, record_id)
        return await connector.update(folder, record_id, fields, idempotency_key)
    version = version_of(main, field)
    if version is None:  # main never saw a version: nothing to compare with
        return await connector.update(folder, record_id, fields, idempotency_key)
    for _ in range(MAX_ATTEMPTS):
        try:
            return await connector.update(
                folder, record_id, fields, idempotency_key, if_match=version
            )
        except PreconditionFailed:
            upstream = await _read(connector, folder, record_id)
            _refuse(conflicts(fields, draft, main, upstream), folder, record_id)
            version = version_of(upstream, field)
    raise TransientFailure(f"{folder}/{record_id} kept changing upstream while it was written")


async def _read(connector: Connector, folder: str, record_id: str) -> Record:
    upstream = await connector.read(folder, record_id)
    if upstream is None:
        raise EntryRejected(f"record {record_id} of {folder} no longer exists in the service")
    return upstream


def _refuse(found: list[JsonObject], folder: str, record_id: str) -> None:
    if found:
        raise changed_upstream(found, folder, record_id)


def changed_upstream(found: list[JsonObject], folder: str, record_id: str) -> ChangedUpstream:
    """The error of an entry whose fields ``found`` changed upstream (``conflicts``)."""
    names = ", ".join(str(c["field"]) for c in found)
    return ChangedUpstream(
        f"record {record_id} of {folder} changed upstream since main's copy in: {names}",
        details=found,
    )
