"""The plan algorithm: a pure function from a draft, main and the indexes to phases.

The service refuses pointers to records that do not exist yet and deletes of
records that are still referenced, so a draft is split into edit, create,
delete and backfill phases (DESIGN §3). Nothing here talks to the outside:
everything the planner needs from main and the projections comes through
``PlannerInputs`` in four batch calls, so a Postgres adapter answers each with
one query and the planner stays linear in the size of the draft.

Two choices the spec leaves open:

- a target that is not in the draft exists on main exactly when FileIndex
  knows its record id; an @-ref to anything else (including a malformed
  ``@/...`` string) is dangling;
- a field absent on one side and ``null`` on the other is no change.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from domain.errors import DanglingReferences, InvalidContent, NothingToPublish, UnknownFolder
from domain.json_types import JsonObject, JsonValue
from domain.paths import FilePath, parse_path
from domain.plan import PHASES, Plan, PlanEntry, entry_key
from domain.references import (
    PointerTargets,
    RefTarget,
    clear_pointers,
    ref_strings,
    resolve_refs,
    target_of,
)
from domain.schema import FolderSchema

__all__ = ["PlannerInputs", "RefTarget", "plan"]


class PlannerInputs(Protocol):
    """Batch lookups into main and the projections, one call per kind of question."""

    def main_contents(self, paths: Collection[str]) -> Mapping[str, JsonObject]:
        """Content on main of those paths that exist there."""
        ...

    def record_ids(self, files: Collection[FilePath]) -> Mapping[FilePath, str]:
        """FileIndex: record ids of the files it knows."""
        ...

    def inbound_references(self, targets: Collection[RefTarget]) -> Collection[str]:
        """Paths on main that point at any target, by @-ref or by resolved record id."""
        ...


@dataclass(frozen=True)
class _File:
    path: str
    file: FilePath
    schema: FolderSchema
    content: JsonObject
    """Draft content (added, modified) or main content (deleted, clearing-only)."""


def plan(
    draft: Mapping[str, JsonObject | None],
    schemas: Mapping[str, FolderSchema],
    inputs: PlannerInputs,
    *,
    delete_page_size: int = 100,
) -> Plan:
    """Turn a draft into an ordered plan; raise a ``DomainError`` if it can't be published."""
    if delete_page_size < 1:
        raise ValueError("delete_page_size must be at least 1")
    try:
        return _Planner(schemas, inputs, delete_page_size).build(draft)
    except RecursionError:
        raise InvalidContent("content is nested too deeply") from None


def _validate(
    draft: Mapping[str, JsonObject | None], schemas: Mapping[str, FolderSchema]
) -> list[tuple[str, FilePath, FolderSchema, JsonObject | None]]:
    checked = []
    for path in sorted(draft, key=str):
        file = parse_path(path)
        schema = _schema_of(file, schemas)
        content = draft[path]
        if content is not None and not isinstance(content, dict):
            raise InvalidContent(f"content of {path!r} must be a JSON object")
        checked.append((path, file, schema, content))
    return checked


def _schema_of(file: FilePath, schemas: Mapping[str, FolderSchema]) -> FolderSchema:
    schema = schemas.get(file.folder)
    if schema is None:
        raise UnknownFolder(f"folder {file.folder!r} of {file.path!r} has no schema")
    return schema


def _record_id(path: str, schema: FolderSchema, on_main: JsonObject) -> str:
    record_id = schema.record_id_of(on_main)
    if record_id is None:
        raise InvalidContent(f"{path!r} on main has no record id in {schema.id_path!r}")
    return record_id


def _changed_fields(
    new: JsonObject,
    old: JsonObject,
    unsent: frozenset[str],
    lookup: Callable[[FilePath], str | None],
) -> JsonObject:
    """Fields of ``new`` that differ from ``old`` once @-refs with a record id are resolved."""
    changed: JsonObject = {}
    for key, value in new.items():
        if key in unsent:
            continue
        before = old.get(key)
        if value == before or resolve_refs(value, lookup) == resolve_refs(before, lookup):
            continue
        changed[key] = value
    for key, before in old.items():
        if key not in new and key not in unsent and before is not None:
            changed[key] = None
    return changed


class _Planner:
    def __init__(
        self, schemas: Mapping[str, FolderSchema], inputs: PlannerInputs, page_size: int
    ) -> None:
        self.schemas = schemas
        self.inputs = inputs
        self.page_size = page_size
        self.entries: list[PlanEntry] = []
        self.known_ids: dict[str, str] = {}
        """Record id by @-ref string, for every target that has one (not added, not deleted)."""
        self.added_refs: set[str] = set()
        self.deleted = PointerTargets(())
        self.uncreated = PointerTargets(())
        self.clearers: dict[FilePath, list[str]] = {}
        """Edit entry keys that clear pointers to a deleted file."""

    def build(self, draft: Mapping[str, JsonObject | None]) -> Plan:
        checked = _validate(draft, self.schemas)
        on_main = self.inputs.main_contents([path for path, *_ in checked])
        added: list[_File] = []
        modified: list[tuple[_File, JsonObject]] = []
        deleted: list[_File] = []
        for path, file, schema, content in checked:
            before = on_main.get(path)
            if content is None:
                if before is not None:
                    deleted.append(_File(path, file, schema, before))
            elif before is None:
                added.append(_File(path, file, schema, content))
            else:
                modified.append((_File(path, file, schema, content), before))
        self.added_refs = {item.file.ref for item in added}
        self.uncreated = PointerTargets(
            RefTarget(i.file.folder, i.file.filename, None) for i in added
        )
        for item, before in modified:
            self.known_ids[item.file.ref] = _record_id(item.path, item.schema, before)
        targets = [
            RefTarget(i.file.folder, i.file.filename, _record_id(i.path, i.schema, i.content))
            for i in deleted
        ]
        self.deleted = PointerTargets(targets)
        self._check_references([item for item, _ in modified] + added, set(draft))

        for item, before in modified:
            self._plan_edit(item, item.content, before)
        self._plan_clearing_only(targets, set(draft))
        for item in added:
            self._plan_create(item)
        self._plan_deletes(deleted)
        if not self.entries:
            raise NothingToPublish("the draft has nothing to publish")
        order = {phase: index for index, phase in enumerate(PHASES)}
        return Plan(tuple(sorted(self.entries, key=lambda e: (order[e.phase], e.path))))

    def _check_references(self, changed: Iterable[_File], draft_paths: set[str]) -> None:
        """Learn the record ids of every target; fail listing every dangling reference."""
        unknown: dict[str, list[tuple[str, str]]] = {}
        for item in changed:
            unsent = item.schema.unsent_fields
            for key, value in item.content.items():
                if key in unsent or not isinstance(value, str | list | dict):
                    continue
                for where, raw in ref_strings(value, key):
                    if (
                        raw not in self.known_ids
                        and raw not in self.added_refs
                        and raw not in self.deleted.by_ref
                    ):
                        unknown.setdefault(raw, []).append((item.path, where))
        lookups = {}
        for raw in unknown:
            target = target_of(raw)
            if target is not None and target.path not in draft_paths:
                lookups[target] = raw
        for target, record_id in self.inputs.record_ids(list(lookups)).items():
            self.known_ids[lookups[target]] = record_id
        dangling = [
            {"source": source, "field": where, "target": raw[2:]}
            for raw, places in unknown.items()
            if raw not in self.known_ids
            for source, where in places
        ]
        if dangling:
            dangling.sort(key=lambda d: (d["source"], d["field"]))
            names = ", ".join(f"{d['source']} {d['field']} -> {d['target']}" for d in dangling[:5])
            more = f" and {len(dangling) - 5} more" if len(dangling) > 5 else ""
            raise DanglingReferences(
                f"{len(dangling)} reference(s) point at files that exist nowhere: {names}{more}",
                details=dangling,
            )

    def _lookup(self, target: FilePath) -> str | None:
        return self.known_ids.get(target.ref)

    def _uncreated_targets(self, value: JsonValue) -> set[str]:
        return {raw for _, raw in ref_strings(value) if raw in self.added_refs}

    def _plan_edit(self, item: _File, content: JsonObject, before: JsonObject) -> None:
        """One edit entry per file: the user's changes and the pointers it must lose."""
        schema = item.schema
        new = clear_pointers(content, schema, self.deleted).content
        changed = _changed_fields(new, before, schema.unsent_fields, self._lookup)
        was_pointing = clear_pointers(before, schema, self.deleted)
        fields, deferred = self._strip(changed)
        for key in deferred:
            if key in was_pointing.fields:
                # The old value points at a record about to be deleted and the new
                # one at a record not created yet: send it without either for now.
                fields[key] = clear_pointers({key: changed[key]}, None, self.uncreated).content[key]
        record_id = _record_id(item.path, schema, before)
        if fields:
            op: JsonObject = {"type": "update", "folder": item.file.folder, "record_id": record_id}
            self._add(item.path, "edit", op | {"fields": fields}, deferred)
            for target in was_pointing.targets:
                self.clearers.setdefault(target, []).append(entry_key("edit", item.path))
        self._backfill(item, record_id, {key: changed[key] for key in deferred})

    def _plan_clearing_only(self, targets: list[RefTarget], draft_paths: set[str]) -> None:
        """Synthetic edits for files on main, untouched by the draft, that point at deletes."""
        if not targets:
            return
        inbound = self.inputs.inbound_references(targets)
        sources = sorted({path for path in inbound if path not in draft_paths})
        contents = self.inputs.main_contents(sources)
        for path in sources:
            before = contents.get(path)
            if before is None:
                continue  # the index lags behind main: nothing left to clear
            file = parse_path(path)
            item = _File(path, file, _schema_of(file, self.schemas), before)
            self._plan_edit(item, before, before)

    def _plan_create(self, item: _File) -> None:
        unsent = item.schema.unsent_fields
        new = clear_pointers(item.content, item.schema, self.deleted).content
        fields, deferred = self._strip({k: v for k, v in new.items() if k not in unsent})
        op = {"type": "create", "folder": item.file.folder, "fields": fields}
        self._add(item.path, "create", op, deferred)
        self._backfill(item, None, {key: new[key] for key in deferred})

    def _strip(self, fields: JsonObject) -> tuple[JsonObject, tuple[str, ...]]:
        """Split off the fields that point at records this pipeline has yet to create."""
        if not self.added_refs:
            return fields, ()
        deferred = tuple(
            sorted(
                key
                for key, value in fields.items()
                if isinstance(value, str | list | dict) and self._uncreated_targets(value)
            )
        )
        return {k: v for k, v in fields.items() if k not in deferred}, deferred

    def _backfill(self, item: _File, record_id: str | None, fields: JsonObject) -> None:
        if not fields:
            return
        depends = {entry_key("create", raw[2:]) for raw in self._uncreated_targets(fields)}
        if record_id is None:
            depends.add(entry_key("create", item.path))
        op: JsonObject = {"type": "update", "folder": item.file.folder, "record_id": record_id}
        self._add(item.path, "backfill", op | {"fields": fields}, (), tuple(sorted(depends)))

    def _plan_deletes(self, deleted: list[_File]) -> None:
        by_folder: dict[str, list[_File]] = {}
        for item in deleted:
            by_folder.setdefault(item.file.folder, []).append(item)
        for folder, items in by_folder.items():
            for index, item in enumerate(sorted(items, key=lambda i: i.path)):
                op = {
                    "type": "delete",
                    "folder": folder,
                    "record_id": _record_id(item.path, item.schema, item.content),
                    "page": index // self.page_size,
                }
                depends = tuple(sorted(self.clearers.get(item.file, ())))
                self._add(item.path, "delete", op, (), depends)

    def _add(
        self,
        path: str,
        phase: str,
        operation: JsonObject,
        deferred: tuple[str, ...],
        depends_on: tuple[str, ...] = (),
    ) -> None:
        self.entries.append(PlanEntry(path, phase, operation, deferred, depends_on))
