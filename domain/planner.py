"""The plan algorithm: a pure function from a draft, main and the indexes to phases.

The service refuses pointers to records that do not exist yet and deletes of
records that are still referenced, so a draft is split into edit, create,
delete and backfill phases (DESIGN §3). Nothing here talks to the outside:
everything the planner needs from main and the projections comes through
``PlannerInputs`` in four batch calls, so a Postgres adapter answers each with
one query and the planner stays linear in the size of the draft.

Choices the spec leaves open:

- a target that is not in the draft exists on main exactly when FileIndex
  knows its record id; an @-ref to anything else (including a malformed
  ``@/...`` string) is dangling;
- a field absent on one side and ``null`` on the other is no change;
- a field whose main value points at a deleted record and whose new value at
  a record this pipeline creates can be neither kept nor sent: the edit sends
  it without the uncreated pointers (listed in ``deferred_fields`` all the
  same) and the backfill sends it whole;
- which main files point at a deleted record is FileReference's answer: a
  file it doesn't list is not cleared, a file it lists that no longer points
  there yields no entry;
- a main file without a record id can't be edited or deleted: ``InvalidContent``.
- the service accepts deleting records that point at each other only within
  one bulk-delete call; deletes go out one call per folder page, so a deleted
  file pointing at a deleted file of *another* call is cleared in the edit
  phase too, and the target's delete waits for that edit;
- creates go out in dependency waves (``domain.calls.waves``): a create
  depends on the creates of the new records it points at and carries those
  pointers; only cycle-breaking fields (``domain.cycles``) wait for the
  backfill;
- an edit that points at a new record and clears nothing for a delete is one
  backfill entry (one request once the targets exist), not an edit now plus
  a backfill; an edit that clears a pointer must go before the delete, so it
  sends what it can and the backfill the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

from domain.calls import waves
from domain.clearing import Cleared, PointerTargets, RefTarget, clear_pointers
from domain.cycles import cycle_breaking_fields
from domain.errors import DanglingReferences, InvalidContent, NothingToPublish, UnknownFolder
from domain.json_types import JsonObject, json_equal
from domain.paths import REF_PREFIX, FilePath, parse_path
from domain.plan import DELETE_PAGE_SIZE, PHASES, Phase, Plan, PlanEntry, entry_key
from domain.pointers import ref_strings, ref_strings_by_field, resolve_refs, target_of
from domain.schema import FolderSchema

__all__ = ["PlannerInputs", "RefTarget", "plan"]

_NOTHING_CLEARED = Cleared({}, (), frozenset())


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
    delete_page_size: int = DELETE_PAGE_SIZE,
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


def _delete_batches(deleted: list[_File], page_size: int) -> dict[str, tuple[str, int]]:
    """path -> (folder, page): the bulk-delete call that removes each deleted file."""
    batches: dict[str, tuple[str, int]] = {}
    by_folder: dict[str, list[str]] = {}
    for item in deleted:
        by_folder.setdefault(item.file.folder, []).append(item.path)
    for folder, paths in by_folder.items():
        for index, path in enumerate(sorted(paths)):
            batches[path] = (folder, index // page_size)
    return batches


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
        if json_equal(value, before) or json_equal(
            resolve_refs(value, lookup), resolve_refs(before, lookup)
        ):
            continue
        changed[key] = value
    for key, before in old.items():
        if key not in new and key not in unsent and before is not None:
            changed[key] = None
    return changed


def _values(content: JsonObject, fields: JsonObject) -> JsonObject:
    """Main's value of each of ``fields`` (None where main has none): the diff's "before"."""
    return {key: content.get(key) for key in fields}


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
        self.refs: dict[str, dict[str, list[str]]] = {}
        """Per draft file: the raw @-refs under each top-level field, scanned once."""
        self.inbound: set[str] = set()
        """Main paths that FileReference says point at a deleted file."""
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
        self.batches = _delete_batches(deleted, self.page_size)
        draft_paths = set(draft)
        self._check_references([item for item, _ in modified] + added, draft_paths)
        if targets:
            self.inbound = set(self.inputs.inbound_references(targets))

        for item, before in modified:
            self._plan_edit(item, before)
        self._plan_clearing_only(draft_paths)
        self._plan_clearing_between_deletes(deleted, targets)
        self.cycle_fields = cycle_breaking_fields(self._create_graph(added))
        for item in added:
            self._plan_create(item)
        self._plan_deletes(deleted)
        if not self.entries:
            raise NothingToPublish("the draft has nothing to publish")
        order = {phase: index for index, phase in enumerate(PHASES)}
        wave = waves(self.entries)
        return Plan(
            tuple(sorted(self.entries, key=lambda e: (order[e.phase], wave[e.key], e.path)))
        )

    def _create_graph(self, added: list[_File]) -> dict[str, dict[str, frozenset[str]]]:
        """Which new records each new record's fields point at (``domain.cycles``)."""
        graph: dict[str, dict[str, frozenset[str]]] = {}
        for item in added:
            graph[item.path] = {
                key: frozenset(raw[len(REF_PREFIX) :] for raw in raws if raw in self.added_refs)
                for key, raws in self.refs[item.path].items()
                if any(raw in self.added_refs for raw in raws)
            }
        return graph

    def _check_references(self, changed: list[_File], draft_paths: set[str]) -> None:
        """Learn the record ids of every target; fail listing every dangling reference."""
        unknown: dict[str, list[str]] = {}
        for item in changed:
            refs = ref_strings_by_field(item.content, item.schema.unsent_fields)
            self.refs[item.path] = refs
            for raws in refs.values():
                for raw in raws:
                    if (
                        raw not in self.known_ids
                        and raw not in self.added_refs
                        and raw not in self.deleted.by_ref
                    ):
                        unknown.setdefault(raw, []).append(item.path)
        lookups = {}
        for raw in unknown:
            target = target_of(raw)
            if target is not None and target.path not in draft_paths:
                lookups[target] = raw
        if lookups:
            for target, record_id in self.inputs.record_ids(list(lookups)).items():
                self.known_ids[lookups[target]] = record_id
        sources = {
            path for raw, paths in unknown.items() if raw not in self.known_ids for path in paths
        }
        if sources:
            self._fail_dangling([item for item in changed if item.path in sources])

    def _fail_dangling(self, sources: list[_File]) -> None:
        dangling = [
            {"source": item.path, "field": where, "target": raw[len(REF_PREFIX) :]}
            for item in sources
            for key, value in item.content.items()
            if key not in item.schema.unsent_fields
            for where, raw in ref_strings(value, key)
            if raw not in self.known_ids
            and raw not in self.added_refs
            and raw not in self.deleted.by_ref
        ]
        dangling.sort(key=lambda d: (d["source"], d["field"]))
        names = ", ".join(f"{d['source']} {d['field']} -> {d['target']}" for d in dangling[:5])
        more = f" and {len(dangling) - 5} more" if len(dangling) > 5 else ""
        raise DanglingReferences(
            f"{len(dangling)} reference(s) point at files that exist nowhere: {names}{more}",
            details=dangling,
        )

    def _lookup(self, target: FilePath) -> str | None:
        return self.known_ids.get(target.ref)

    def _clear_draft(self, item: _File) -> JsonObject:
        """Draft content without pointers to deletes, looking only where the scan found some."""
        if not self.deleted:
            return item.content
        refs = self.refs[item.path]
        hits = [key for key, raws in refs.items() if any(r in self.deleted.by_ref for r in raws)]
        return clear_pointers(item.content, item.schema, self.deleted, only=hits).content

    def _plan_edit(self, item: _File, before: JsonObject, cleared: Cleared | None = None) -> None:
        """One edit entry per file: the user's changes and the pointers it must lose.

        ``cleared`` is given for a main file the draft leaves alone: its
        changes are exactly the pointers cleared out of its main content.
        """
        schema = item.schema
        if cleared is None:
            new = self._clear_draft(item)
            changed = _changed_fields(new, before, schema.unsent_fields, self._lookup)
            refs = self.refs[item.path]
            was_pointing = _NOTHING_CLEARED
            if item.path in self.inbound:
                was_pointing = clear_pointers(before, schema, self.deleted)
        else:
            changed = {
                k: cleared.content[k] for k in cleared.fields if k not in schema.unsent_fields
            }
            refs = ref_strings_by_field(changed)
            was_pointing = cleared
        fields, deferred, uncreated = self._strip(changed, refs)
        for key in deferred:
            if key in was_pointing.fields:
                # The old value points at a record about to be deleted and the new
                # one at a record not created yet: send it without either for now.
                fields[key] = clear_pointers({key: changed[key]}, None, self.uncreated).content[key]
        record_id = _record_id(item.path, schema, before)
        if deferred and not was_pointing.targets:
            # Nothing waits for this edit: one request after the creates does it all.
            self._backfill(item, record_id, changed, uncreated, before)
            return
        if fields:
            op: JsonObject = {"type": "update", "folder": item.file.folder, "record_id": record_id}
            self._add(
                item.path,
                Phase.EDIT,
                op | {"fields": fields},
                deferred,
                before=_values(before, fields),
            )
            for target in was_pointing.targets:
                self.clearers.setdefault(target, []).append(entry_key(Phase.EDIT, item.path))
        self._backfill(item, record_id, {key: changed[key] for key in deferred}, uncreated, before)

    def _plan_clearing_only(self, draft_paths: set[str]) -> None:
        """Synthetic edits for files on main, untouched by the draft, that point at deletes."""
        sources = sorted(path for path in self.inbound if path not in draft_paths)
        if not sources:
            return
        contents = self.inputs.main_contents(sources)
        for path in sources:
            before = contents.get(path)
            if before is None:
                continue  # the index lags behind main: nothing left to clear
            file = parse_path(path)
            item = _File(path, file, _schema_of(file, self.schemas), before)
            self._plan_edit(item, before, clear_pointers(before, item.schema, self.deleted))

    def _plan_clearing_between_deletes(
        self, deleted: list[_File], targets: list[RefTarget]
    ) -> None:
        """Deleted files let go of deleted files that another delete call removes."""
        by_path = {item.path: item for item in deleted}
        for path in sorted(self.inbound & by_path.keys()):
            item = by_path[path]
            batch = self.batches[path]
            elsewhere = PointerTargets(
                t for t in targets if self.batches[f"{t.folder}/{t.filename}"] != batch
            )
            cleared = clear_pointers(item.content, item.schema, elsewhere)
            if cleared.fields:
                self._plan_edit(item, item.content, cleared)

    def _plan_create(self, item: _File) -> None:
        """A create that goes out after the new records it points at, but for cycle fields.

        Pointers to new records stay in the create (resolved when it is sent,
        a wave after their targets'); only the fields ``domain.cycles`` picked
        to break a cycle wait for the backfill.
        """
        unsent = item.schema.unsent_fields
        new = self._clear_draft(item)
        sent = {k: v for k, v in new.items() if k not in unsent}
        refs = self.refs[item.path]
        cut = self.cycle_fields.get(item.path, frozenset())
        fields, deferred, uncreated = self._strip(sent, {k: v for k, v in refs.items() if k in cut})
        targets = {raw for key in fields for raw in refs.get(key, ()) if raw in self.added_refs}
        depends = tuple(sorted(entry_key(Phase.CREATE, raw[len(REF_PREFIX) :]) for raw in targets))
        op = {"type": "create", "folder": item.file.folder, "fields": fields}
        self._add(item.path, Phase.CREATE, op, deferred, depends)
        self._backfill(item, None, {key: new[key] for key in deferred}, uncreated, None)

    def _strip(
        self, fields: JsonObject, refs: Mapping[str, list[str]]
    ) -> tuple[JsonObject, tuple[str, ...], set[str]]:
        """Split off the fields that point at records this pipeline has yet to create.

        Returns the fields to send now, the deferred field names and the
        @-refs of the records the deferred fields wait for.
        """
        if not self.added_refs:
            return fields, (), set()
        deferred: list[str] = []
        uncreated: set[str] = set()
        for key in fields:
            waiting = [raw for raw in refs.get(key, ()) if raw in self.added_refs]
            if waiting:
                deferred.append(key)
                uncreated.update(waiting)
        if not deferred:
            return fields, (), uncreated
        kept = {k: v for k, v in fields.items() if k not in deferred}
        return kept, tuple(sorted(deferred)), uncreated

    def _backfill(
        self,
        item: _File,
        record_id: str | None,
        fields: JsonObject,
        uncreated: set[str],
        main: JsonObject | None,
    ) -> None:
        """``main``: the record's content on main (None: the pipeline creates it)."""
        if not fields:
            return
        depends = {entry_key(Phase.CREATE, raw[len(REF_PREFIX) :]) for raw in uncreated}
        if record_id is None:
            depends.add(entry_key(Phase.CREATE, item.path))
        op: JsonObject = {"type": "update", "folder": item.file.folder, "record_id": record_id}
        before = {} if main is None else _values(main, fields)
        self._add(
            item.path, Phase.BACKFILL, op | {"fields": fields}, (), tuple(sorted(depends)), before
        )

    def _plan_deletes(self, deleted: list[_File]) -> None:
        by_folder: dict[str, list[_File]] = {}
        for item in deleted:
            by_folder.setdefault(item.file.folder, []).append(item)
        for folder, items in by_folder.items():
            for item in sorted(items, key=lambda i: i.path):
                op = {
                    "type": "delete",
                    "folder": folder,
                    "record_id": _record_id(item.path, item.schema, item.content),
                    "page": self.batches[item.path][1],
                }
                depends = tuple(sorted(self.clearers.get(item.file, ())))
                self._add(item.path, Phase.DELETE, op, (), depends)

    def _add(
        self,
        path: str,
        phase: Phase,
        operation: JsonObject,
        deferred: tuple[str, ...],
        depends_on: tuple[str, ...] = (),
        before: JsonObject | None = None,
    ) -> None:
        self.entries.append(PlanEntry(path, phase, operation, deferred, depends_on, before or {}))
