"""References between files: @-references anywhere, resolved ids in schema fields."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from domain.json_types import JsonObject, JsonValue
from domain.paths import FilePath, try_parse_ref
from domain.schema import FolderSchema


@dataclass(frozen=True, order=True)
class ExtractedRef:
    """One pointer out of a file: by target filename (@-ref) or by target record id."""

    field: str
    """Dotted path of the value inside the file (``author``, ``tags.0``)."""
    target_folder: str
    target_filename: str | None
    target_record_id: str | None


def iter_at_refs(value: JsonValue, path: str = "") -> Iterator[tuple[str, FilePath]]:
    """Every @-reference in a JSON value, with the dotted path where it stands."""
    if isinstance(value, str):
        target = try_parse_ref(value)
        if target is not None:
            yield path, target
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from iter_at_refs(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from iter_at_refs(item, f"{path}.{index}" if path else str(index))


def iter_resolved_refs(
    content: JsonObject, schema: FolderSchema | None
) -> Iterator[tuple[str, str, str]]:
    """``(field, target_folder, record_id)`` for every resolved id in a reference field."""
    if schema is None:
        return
    for ref_field in schema.fields:
        value = content.get(ref_field.name)
        values = value if isinstance(value, list) else [value]
        for index, item in enumerate(values):
            if isinstance(item, str) and item and not item.startswith("@/"):
                where = f"{ref_field.name}.{index}" if isinstance(value, list) else ref_field.name
                yield where, ref_field.target, item


def extract_references(content: JsonObject, schema: FolderSchema | None) -> list[ExtractedRef]:
    """All pointers out of one file, deduplicated, in a stable order."""
    found = {
        ExtractedRef(field, target.folder, target.filename, None)
        for field, target in iter_at_refs(content)
    }
    found.update(
        ExtractedRef(field, folder, None, record_id)
        for field, folder, record_id in iter_resolved_refs(content, schema)
    )
    return sorted(found, key=lambda r: (r.field, r.target_folder, r.target_filename or "", r.target_record_id or ""))
