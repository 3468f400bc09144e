"""Folder schemas: how a folder's records carry ids and references."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from domain.errors import InvalidSchema
from domain.json_types import JsonObject, JsonValue
from domain.paths import parse_folder

DEFAULT_READ_ONLY = ("createdOn", "lastUpdated", "cdnUrl")
FIELD_NAME = r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$"
"""A record field's name: matched whole (``re.fullmatch``), so no trailing newline slips by."""
_FIELD_NAME = re.compile(FIELD_NAME)
MAX_READ_ONLY = 500


def _is_field_name(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _FIELD_NAME.fullmatch(value) is not None


@dataclass(frozen=True)
class ReferenceField:
    name: str
    target: str
    multiple: bool = False


@dataclass(frozen=True)
class FolderSchema:
    """Per folder: id path, reference fields, read-only fields, filename rule.

    ``filename_from`` names the field whose slug becomes a pulled record's
    filename; the record id is the fallback.
    """

    folder: str
    id_path: str = "id"
    fields: tuple[ReferenceField, ...] = ()
    read_only: frozenset[str] = field(default_factory=lambda: frozenset(DEFAULT_READ_ONLY))
    filename_from: str | None = "slug"

    def reference_field(self, name: str) -> ReferenceField | None:
        for ref_field in self.fields:
            if ref_field.name == name:
                return ref_field
        return None

    @property
    def unsent_fields(self) -> frozenset[str]:
        """Fields never sent to nor diffed against the service: id and read-only."""
        return self.read_only | {self.id_path}

    def record_id_of(self, content: Mapping[str, JsonValue]) -> str | None:
        value = content.get(self.id_path)
        return value if isinstance(value, str) and value else None

    def to_dict(self) -> JsonObject:
        """The API/JSON form (camelCase, as API.md writes it)."""
        return {
            "idPath": self.id_path,
            "fields": [
                {
                    "name": f.name,
                    "reference": True,
                    "referenceTarget": f.target,
                    "multiple": f.multiple,
                }
                for f in self.fields
            ],
            "readOnly": sorted(self.read_only),
            "filenameFrom": self.filename_from,
        }

    @classmethod
    def from_recorded(cls, folder: str, data: Mapping[str, Any]) -> FolderSchema:
        """A schema as ``to_dict`` recorded it, unchecked: one recorded before a rule
        was tightened must still be read, not refused, or its workspace would stop."""
        fields = tuple(
            ReferenceField(f["name"], f["referenceTarget"], bool(f.get("multiple", False)))
            for f in data.get("fields", [])
        )
        read_only = frozenset(data.get("readOnly", DEFAULT_READ_ONLY))
        return cls(folder, data.get("idPath", "id"), fields, read_only, data.get("filenameFrom"))

    @classmethod
    def from_dict(cls, folder: str, data: Mapping[str, JsonValue]) -> FolderSchema:
        """Validate the API/JSON form. Raises InvalidSchema with a clear message."""
        parse_folder(folder)
        id_path = data.get("idPath", "id")
        if not _is_field_name(id_path):
            raise InvalidSchema(f"idPath {id_path!r} is not a field name")
        raw_fields = data.get("fields", [])
        if not isinstance(raw_fields, list):
            raise InvalidSchema("fields must be a list")
        fields: list[ReferenceField] = []
        seen: set[str] = set()
        for raw in raw_fields:
            if not isinstance(raw, Mapping):
                raise InvalidSchema("each field must be an object")
            name = raw.get("name")
            if not _is_field_name(name):
                raise InvalidSchema(f"field name {name!r} is not valid")
            if name in seen:
                raise InvalidSchema(f"field {name!r} is declared twice")
            seen.add(name)
            reference = raw.get("reference", False)
            if not isinstance(reference, bool):
                raise InvalidSchema(f"reference of field {name!r} must be true or false")
            if not reference:
                continue
            target = raw.get("referenceTarget")
            if not isinstance(target, str):
                raise InvalidSchema(f"reference field {name!r} needs a referenceTarget")
            parse_folder(target)
            multiple = raw.get("multiple", False)
            if not isinstance(multiple, bool):
                raise InvalidSchema(f"multiple of field {name!r} must be true or false")
            fields.append(ReferenceField(name, target, multiple))
        read_only = data.get("readOnly", list(DEFAULT_READ_ONLY))
        if not isinstance(read_only, list) or not all(_is_field_name(r) for r in read_only):
            raise InvalidSchema("readOnly must be a list of field names")
        if len(read_only) > MAX_READ_ONLY:
            raise InvalidSchema(f"readOnly lists more than {MAX_READ_ONLY} fields")
        filename_from = data.get("filenameFrom", "slug")
        if filename_from is not None and not _is_field_name(filename_from):
            raise InvalidSchema("filenameFrom must be a field name or null")
        if id_path in read_only:
            read_only = [r for r in read_only if r != id_path]
        return cls(folder, id_path, tuple(fields), frozenset(read_only), filename_from)
