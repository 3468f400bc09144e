"""What the sandbox refuses, and how: its errors and the rules of collection and field names.

Kept apart from the store so the HTTP layer can raise and render the same
errors without reaching into the store's data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from domain.json_types import JsonObject, JsonValue

MAX_BULK = 100
"""Most items in one bulk create or update, as on Webflow."""
MAX_DELETE = 100
MAX_PAGE = 100

_NAME = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")


class StoreError(Exception):
    """A refused request; ``status`` and ``body`` are what the client sees."""

    status = 400
    code = "validation_error"

    def __init__(self, message: str, **extra: JsonValue) -> None:
        super().__init__(message)
        self.body: JsonObject = {"code": self.code, "message": message, **extra}


class ValidationError(StoreError):
    pass


class NotFound(StoreError):
    status = 404
    code = "not_found"


class Conflict(StoreError):
    status = 409
    code = "conflict"


class PreconditionFailed(StoreError):
    """``If-Match`` named a version the item no longer has; the body carries the current one."""

    status = 412
    code = "precondition_failed"


@dataclass(frozen=True, slots=True)
class ReferenceField:
    target: str
    multiple: bool = False


def check_name(name: str) -> None:
    """Names are slash-separated segments; none may be ``items`` so routes stay unambiguous."""
    if not _NAME.match(name) or "items" in name.split("/"):
        raise ValidationError(f"invalid collection name {name!r}")


def parse_reference_fields(raw: JsonValue) -> dict[str, ReferenceField]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValidationError("referenceFields must be an object")
    fields: dict[str, ReferenceField] = {}
    for name, spec in raw.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("target"), str):
            raise ValidationError(f"reference field {name!r} needs a string 'target'")
        multiple = spec.get("multiple", False)
        if not isinstance(multiple, bool):
            raise ValidationError(f"reference field {name!r}: 'multiple' must be a boolean")
        check_name(spec["target"])
        fields[name] = ReferenceField(spec["target"], multiple)
    return fields


def targets(value: JsonValue, spec: ReferenceField, name: str) -> list[str]:
    """The ids a reference field value points at; a malformed value is a 400."""
    if value is None:
        return []
    if spec.multiple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValidationError(f"field {name!r} must be a list of item ids or null")
        return value
    if not isinstance(value, str):
        raise ValidationError(f"field {name!r} must be an item id or null")
    return [value]


def field_data(raw: JsonValue) -> JsonObject:
    if not isinstance(raw, dict):
        raise ValidationError("'fieldData' must be an object")
    return raw
