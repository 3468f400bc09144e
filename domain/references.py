"""References between files: @-references anywhere, resolved ids in schema fields.

The planner and the projections read pointers with the same functions, so a
file the FileReference projection lists as a referrer is also a file whose
pointers the planner knows how to clear.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from domain.json_types import JsonObject, JsonValue
from domain.paths import REF_PREFIX, FilePath, try_parse_ref
from domain.schema import FolderSchema


@dataclass(frozen=True, order=True)
class ExtractedRef:
    """One pointer out of a file: by target filename (@-ref) or by target record id."""

    field: str
    """Dotted path of the value inside the file (``author``, ``tags.0``)."""
    target_folder: str
    target_filename: str | None
    target_record_id: str | None


@dataclass(frozen=True)
class RefTarget:
    """A file others may point at: by its @-ref, or by its record id once it has one."""

    folder: str
    filename: str
    record_id: str | None

    @property
    def file(self) -> FilePath:
        return FilePath(self.folder, self.filename)


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
    return sorted(
        found,
        key=lambda r: (r.field, r.target_folder, r.target_filename or "", r.target_record_id or ""),
    )


def strip_fields(content: JsonObject, names: Iterable[str]) -> tuple[JsonObject, JsonObject]:
    """Split off top-level fields: ``(content without them, the removed fields)``.

    Names absent from the content are ignored, so the removed part is exactly
    what a later backfill has to restore.
    """
    wanted = set(names)
    kept = {k: v for k, v in content.items() if k not in wanted}
    removed = {k: v for k, v in content.items() if k in wanted}
    return kept, removed


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
