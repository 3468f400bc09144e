"""Reading pointers between files: @-references anywhere, resolved ids in schema fields.

The planner and the FileReference projection read pointers with these same
functions, so the files the projection lists as pointing at a record are the
files whose pointers the planner finds, resolves and clears.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from functools import lru_cache

from domain.json_types import JsonObject, JsonValue
from domain.paths import REF_PREFIX, FilePath, try_parse_ref
from domain.schema import FolderSchema

# Drafts repeat the same few thousand targets; parsing each string once keeps the
# planner linear in the number of references rather than in regex work.
target_of: Callable[[str], FilePath | None] = lru_cache(maxsize=1 << 17)(try_parse_ref)


def _collect(value: JsonValue, path: str, out: list[tuple[str, str]]) -> None:
    # A plain recursive walk: nested generators cost a frame switch per level per item.
    if isinstance(value, str):
        if value.startswith(REF_PREFIX):
            out.append((path, value))
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str | dict | list):
                _collect(item, f"{path}.{key}" if path else str(key), out)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, str | dict | list):
                _collect(item, f"{path}.{index}" if path else str(index), out)


def _collect_raw(value: JsonValue, out: list[str]) -> None:
    if isinstance(value, str):
        if value.startswith(REF_PREFIX):
            out.append(value)
    elif isinstance(value, dict):
        for item in value.values():
            if isinstance(item, str | dict | list):
                _collect_raw(item, out)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, str | dict | list):
                _collect_raw(item, out)


def ref_strings_by_field(content: JsonObject, skip: Collection[str] = ()) -> dict[str, list[str]]:
    """The raw @-reference strings under each top-level field that holds any.

    The planner's hot path: no dotted paths are built, since only a dangling
    reference needs one (and ``ref_strings`` gives it then).
    """
    found: dict[str, list[str]] = {}
    for key, value in content.items():
        if key in skip or not isinstance(value, str | dict | list):
            continue
        out: list[str] = []
        _collect_raw(value, out)
        if out:
            found[key] = out
    return found


def ref_strings(value: JsonValue, path: str = "") -> list[tuple[str, str]]:
    """``(dotted path, raw string)`` for every string that claims to be an @-reference.

    Malformed ones (``@/no-folder.json``) are included: the planner reports them
    as dangling instead of sending them on as text.
    """
    out: list[tuple[str, str]] = []
    _collect(value, path, out)
    return out


def iter_at_refs(value: JsonValue, path: str = "") -> Iterator[tuple[str, FilePath]]:
    """Every well-formed @-reference in a JSON value, with the dotted path where it stands."""
    for where, raw in ref_strings(value, path):
        target = target_of(raw)
        if target is not None:
            yield where, target


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


def resolve_refs(value: JsonValue, lookup: Callable[[FilePath], str | None]) -> JsonValue:
    """The value with every @-reference that ``lookup`` knows replaced by its record id.

    Unknown and malformed references are left as they are: the caller decides
    whether that is an error (dangling) or a pointer to a record not created
    yet. An unchanged value is returned as the same object, so comparing
    resolved forms costs nothing when there is nothing to resolve.
    """
    if isinstance(value, str):
        if value.startswith(REF_PREFIX):
            target = target_of(value)
            if target is not None:
                record_id = lookup(target)
                if record_id is not None:
                    return record_id
        return value
    if isinstance(value, dict):
        items = {k: resolve_refs(v, lookup) for k, v in value.items()}
        if all(items[k] is v for k, v in value.items()):
            return value
        return items
    if isinstance(value, list):
        resolved = [resolve_refs(v, lookup) for v in value]
        if all(a is b for a, b in zip(resolved, value, strict=True)):
            return value
        return resolved
    return value
