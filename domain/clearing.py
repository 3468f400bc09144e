"""Clearing pointers to files that are going away.

The service refuses to delete a record that is still referenced, and to create
one that points at a record not created yet, so the planner sends files without
those pointers first. What counts as a pointer here is what ``domain.pointers``
reads: an @-reference anywhere, a resolved id in a reference field.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from domain.json_types import JsonObject, JsonValue
from domain.paths import FilePath
from domain.schema import FolderSchema


@dataclass(frozen=True)
class RefTarget:
    """A file others may point at: by its @-ref, or by its record id once it has one."""

    folder: str
    filename: str
    record_id: str | None

    @property
    def file(self) -> FilePath:
        return FilePath(self.folder, self.filename)


class PointerTargets:
    """Files whose pointers must go, indexed by @-ref string and by (folder, record id).

    Built once per plan so that clearing a file costs one dict lookup per string.
    """

    def __init__(self, targets: Iterable[RefTarget]) -> None:
        self.by_ref: dict[str, FilePath] = {}
        self.by_id: dict[str, dict[str, FilePath]] = {}
        self._fields: dict[int, tuple[FolderSchema, dict[str, str]]] = {}
        for target in targets:
            file = target.file
            self.by_ref[file.ref] = file
            if target.record_id:
                self.by_id.setdefault(target.folder, {})[target.record_id] = file

    def __bool__(self) -> bool:
        return bool(self.by_ref)

    def reference_fields(self, schema: FolderSchema | None) -> dict[str, str]:
        """Target folder by reference field name, worked out once per schema."""
        if schema is None:
            return {}
        cached = self._fields.get(id(schema))
        if cached is None or cached[0] is not schema:
            cached = (schema, {f.name: f.target for f in schema.fields})
            self._fields[id(schema)] = cached
        return cached[1]


@dataclass(frozen=True)
class Cleared:
    content: JsonObject
    fields: tuple[str, ...]
    """Top-level fields whose value changed, in content order."""
    targets: frozenset[FilePath]
    """The targets that at least one removed pointer pointed at."""


_DROP = object()


def _clear_value(
    value: JsonValue,
    by_ref: dict[str, FilePath],
    by_id: dict[str, FilePath] | None,
    found: set[FilePath],
) -> JsonValue:
    """The value without pointers; ``_DROP`` when the value itself is one.

    ``by_id`` is only given for the value of a reference field and the items of
    its list: a bare id anywhere else is just text.
    """
    if isinstance(value, str):
        hit = by_ref.get(value)
        if hit is None and by_id is not None:
            hit = by_id.get(value)
        if hit is None:
            return value
        found.add(hit)
        return _DROP
    if isinstance(value, list):
        kept: list[JsonValue] = []
        changed = False
        for item in value:
            new = _clear_value(item, by_ref, by_id, found)
            if new is _DROP:
                changed = True
                continue
            changed = changed or new is not item
            kept.append(new)
        return kept if changed else value
    if isinstance(value, dict):
        out: JsonObject | None = None
        for key, item in value.items():
            new = _clear_value(item, by_ref, None, found)
            if new is item:
                continue
            if out is None:
                out = dict(value)
            out[key] = None if new is _DROP else new
        return value if out is None else out
    return value


def clear_pointers(
    content: JsonObject,
    schema: FolderSchema | None,
    targets: PointerTargets,
    *,
    only: Collection[str] | None = None,
) -> Cleared:
    """Remove every pointer to ``targets``: @-refs anywhere, resolved ids in reference fields.

    A pointer standing in a list is removed from the list (a ``multiple``
    reference loses that element); anywhere else it becomes ``None``. The
    service refuses to delete a record that is still referenced, so this is
    what the edit phase sends before the delete phase runs.

    ``only`` names the top-level fields that can hold a pointer, for a caller
    that has already scanned the content; reference fields are always looked at.
    """
    if not targets:
        return Cleared(content, (), frozenset())
    ref_fields = targets.reference_fields(schema)
    keys: Iterable[str] = content
    if only is not None:
        wanted = {*only, *ref_fields}
        keys = [key for key in content if key in wanted]
    found: set[FilePath] = set()
    out: JsonObject | None = None
    changed: list[str] = []
    for key in keys:
        value = content.get(key)
        if not isinstance(value, str | list | dict):
            continue
        folder = ref_fields.get(key)
        by_id = targets.by_id.get(folder) if folder is not None else None
        new = _clear_value(value, targets.by_ref, by_id, found)
        if new is value:
            continue
        if out is None:
            out = dict(content)
        out[key] = None if new is _DROP else new
        changed.append(key)
    if out is None:
        return Cleared(content, (), frozenset())
    return Cleared(out, tuple(changed), frozenset(found))
