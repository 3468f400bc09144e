"""Bulk creates and updates (API.md section 10): their shape, and errors that name the item.

A bulk request is applied whole or not at all, so its refusal has to say which
item was wrong, or the client could not fix and resend it: an error about one
item carries its ``index`` and starts its message with ``items[i]:``. The shape
of the body is checked here, before the store's lock is taken; what depends on
the data (ids, versions, references) the store checks under its lock, through
``at_index``, before it applies the first item.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from domain.json_types import JsonObject, JsonValue
from infrastructure.sandbox.rules import MAX_BULK, StoreError, ValidationError, field_data


@dataclass(frozen=True, slots=True)
class ItemChange:
    """One item of an update: merge ``fields``, only at version ``if_match`` when given.

    ``fields`` is as sent: the store checks it with the item, after the item's
    existence and version, as for a single ``PATCH``.
    """

    id: str
    fields: JsonValue
    if_match: str | None = None


def is_bulk(body: JsonObject) -> bool:
    """A body with ``fieldData`` is a single write, whatever else it holds."""
    return "fieldData" not in body and "items" in body


def creates(body: JsonObject) -> list[JsonObject]:
    """The ``fieldData`` of each item of a bulk create, in request order."""
    data: list[JsonObject] = []
    for index, entry in enumerate(_entries(body)):
        with at_index(index):
            data.append(field_data(entry.get("fieldData")))
    return data


def changes(body: JsonObject) -> list[ItemChange]:
    """The items of a bulk update; an id given twice is refused at its repeat."""
    first_at: dict[str, int] = {}
    parsed: list[ItemChange] = []
    for index, entry in enumerate(_entries(body)):
        with at_index(index):
            change = _change(entry)
            if change.id in first_at:
                message = f"item {change.id!r} is already items[{first_at[change.id]}]"
                raise ValidationError(message, id=change.id)
        first_at[change.id] = index
        parsed.append(change)
    return parsed


@contextlib.contextmanager
def at_index(index: int) -> Iterator[None]:
    """Re-raise a ``StoreError`` about one item of a bulk request as one that names it."""
    try:
        yield
    except StoreError as exc:
        raise _indexed(exc, index) from exc


def _indexed(error: StoreError, index: int) -> StoreError:
    details = {k: v for k, v in error.body.items() if k not in ("code", "message")}
    return type(error)(f"items[{index}]: {error.body['message']}", index=index, **details)


def _change(entry: JsonObject) -> ItemChange:
    item_id, if_match = entry.get("id"), entry.get("ifMatch")
    if not isinstance(item_id, str) or not item_id:
        raise ValidationError("'id' must be an item id")
    if if_match is not None and not isinstance(if_match, str):
        raise ValidationError("'ifMatch' must be the item's lastUpdated")
    return ItemChange(item_id, entry.get("fieldData"), if_match)


def _entries(body: JsonObject) -> list[JsonObject]:
    raw = body.get("items")
    if not isinstance(raw, list):
        raise ValidationError("'items' must be a list of items")
    if not raw:
        raise ValidationError("'items' must hold at least one item")
    if len(raw) > MAX_BULK:
        raise ValidationError(f"at most {MAX_BULK} items per request, got {len(raw)}")
    entries: list[JsonObject] = []
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise _indexed(ValidationError("an item must be an object"), index)
        entries.append(entry)
    return entries
