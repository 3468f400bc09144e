"""One call of a run: resolving its pointers, sending it, and reading each item's outcome.

The run engine (``application.runner``) decides *when* calls go out and
records them in rounds; this module is everything about a call itself, behind
the ``Connector`` port: the record ids its @-references resolve to at the
moment of sending, the batch request it becomes, and what each item's outcome
means for the pipeline (published with a main change, failed, or fatal for
the run).

A batch the service refuses whole because of some items is split until
those items stand alone: an item the refusal names (its ``index``) fails with
the service's message, or, refused as changed since main's copy, is
checked alone (``application.upstream``); the rest go out again at once. A
refusal that names no item halves the batch. Each part carries a key derived
from the call's key and its items (``domain.ids.part_key``), so a resumed run
that re-sends the call splits it the same way and the service recognises
every part it already applied.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from application.connector import (
    Connector,
    ConnectorError,
    EntryRejected,
    FatalConnectorError,
    ItemOutcome,
    PreconditionFailed,
    Record,
    RecordUpdate,
)
from application.records import record_to_file
from application.upstream import changed_upstream, conflicts, guarded_update, version_of
from domain.calls import Call
from domain.entries import PipelineEntry
from domain.errors import DomainError
from domain.ids import part_key
from domain.json_types import JsonObject, JsonValue
from domain.paths import FilePath
from domain.plan import EntryKey, Phase
from domain.pointers import iter_at_refs, resolve_refs
from domain.schema import FolderSchema
from domain.workspace import MainChange

FileIndexLookup = Callable[[list[tuple[str, str]]], Mapping[tuple[str, str], str]]
"""FileIndex's record ids of ``(folder, filename)`` pairs (``Views.record_ids`` of a workspace)."""


class UnresolvedReference(DomainError):
    """An @-reference whose target has no record id at the moment of sending."""


@dataclass
class Outcome:
    """What became of one entry of a call."""

    key: EntryKey
    record: Record | None = None
    error: ConnectorError | None = None


class RecordIds:
    """Where @-references point: records this pipeline created, else FileIndex.

    FileIndex is asked once per wave for every target of its entries
    (``preload``), so sending costs no query.
    """

    def __init__(self, created: dict[str, str]) -> None:
        self.created = created
        """path -> record id of the records this pipeline created; grows as creates publish."""
        self.indexed: dict[FilePath, str] = {}

    def preload(self, index: FileIndexLookup, operations: Iterable[JsonObject]) -> None:
        targets = {target for op in operations for _, target in iter_at_refs(op.get("fields", {}))}
        targets = {t for t in targets if t.path not in self.created and t not in self.indexed}
        if targets:
            found = index([(t.folder, t.filename) for t in targets])
            for (folder, filename), record_id in found.items():
                self.indexed[FilePath(folder, filename)] = record_id

    def lookup(self, target: FilePath) -> str | None:
        return self.created.get(target.path) or self.indexed.get(target)


@dataclass
class _Item:
    """One entry of a call, ready to send: resolved fields, and for an update its record."""

    entry: PipelineEntry
    fields: JsonObject
    record_id: str | None = None
    on_main: JsonObject | None = None
    """Main's copy of the record when the run must not overwrite upstream changes."""
    if_match: str | None = None

    @property
    def key(self) -> EntryKey:
        return self.entry.key


async def send(
    connector: Connector,
    call: Call,
    entries: Mapping[EntryKey, PipelineEntry],
    record_ids: RecordIds,
    main: Mapping[str, JsonObject] | None = None,
) -> list[Outcome]:
    """Send one call; every failure comes back as an outcome's error, never raised.

    ``main``: main's copy of the records the phase updates, by path, when the
    run must not overwrite upstream changes (``application.upstream``); None
    when it may.
    """
    if call.kind == "delete":
        ids = [entries[k].operation["record_id"] for k in call.keys]
        try:
            await connector.delete_many(call.folder, ids, call.idempotency_key)
        except ConnectorError as exc:
            return [Outcome(key, error=exc) for key in call.keys]
        return [Outcome(key) for key in call.keys]
    outcomes: list[Outcome] = []
    items: list[_Item] = []
    for key in call.keys:
        try:
            items.append(_prepare(entries[key], record_ids, main, connector.version_field))
        except DomainError as exc:
            outcomes.append(Outcome(key, error=ConnectorError(exc.message)))
    if call.kind == "create" and call.resent and not connector.creates_idempotently:
        items, found = await _already_created(connector, call, items)
        outcomes.extend(found)
    sender = _Batches(connector, call)
    checked = [item for item in items if sender.reads_first(item)]
    batched = [item for item in items if not sender.reads_first(item)]
    if checked:  # no conditional writes: read the records, then write those unchanged
        fine, refused = await _unchanged_upstream(connector, call.folder, checked)
        outcomes.extend(refused)
        batched.extend(fine)
    if batched:
        outcomes.extend(await sender.send(batched))
    return outcomes


async def _unchanged_upstream(
    connector: Connector, folder: str, items: list[_Item]
) -> tuple[list[_Item], list[Outcome]]:
    """Items whose records did not change upstream in a field they write, read in bulk
    (``Connector.read_many``); the others fail ``changed_upstream`` (or as gone)."""
    ids = [str(item.record_id) for item in items]
    try:
        upstream = await connector.read_many(folder, ids)
    except ConnectorError as exc:
        return [], [Outcome(item.key, error=exc) for item in items]
    fine: list[_Item] = []
    refused: list[Outcome] = []
    for item, record_id in zip(items, ids, strict=True):
        assert item.on_main is not None
        record = upstream.get(record_id)
        if record is None:
            message = f"record {record_id} of {folder} no longer exists in the service"
            refused.append(Outcome(item.key, error=EntryRejected(message)))
            continue
        found = conflicts(item.fields, item.entry.operation["fields"], item.on_main, record)
        if found:
            refused.append(Outcome(item.key, error=changed_upstream(found, folder, record_id)))
        else:
            fine.append(_Item(item.entry, item.fields, item.record_id))
    return fine, refused


async def _already_created(
    connector: Connector, call: Call, items: list[_Item]
) -> tuple[list[_Item], list[Outcome]]:
    """Reconcile a re-sent create on a service without idempotency keys: what exists is
    published as it is, only the rest is sent again."""
    try:
        records = await connector.find_created(call.folder, [item.fields for item in items])
    except ConnectorError as exc:
        return [], [Outcome(item.key, error=exc) for item in items]
    found = [Outcome(i.key, record=r) for i, r in zip(items, records, strict=True) if r]
    left = [i for i, r in zip(items, records, strict=True) if r is None]
    return left, found


def _prepare(
    entry: PipelineEntry,
    record_ids: RecordIds,
    main: Mapping[str, JsonObject] | None,
    version_field: str | None,
) -> _Item:
    op = entry.operation
    fields = resolve_refs(op["fields"], record_ids.lookup)
    assert isinstance(fields, dict)
    for where, target in iter_at_refs(fields):
        raise UnresolvedReference(f"{where} points at {target.path}, which has no record id")
    if op["type"] == "create":
        return _Item(entry, fields)
    record_id = op.get("record_id") or record_ids.created.get(entry.path)
    if record_id is None:
        raise UnresolvedReference(f"{entry.path} has no record id to update")
    on_main = None if main is None or op.get("record_id") is None else main.get(entry.path)
    if_match = None
    if on_main is not None and version_field is not None:
        if_match = version_of(on_main, version_field)
    return _Item(entry, fields, record_id, on_main, if_match)


class _Batches:
    """Sends one call's items in as few requests as the service's refusals allow."""

    def __init__(self, connector: Connector, call: Call) -> None:
        self.connector = connector
        self.call = call

    def reads_first(self, item: _Item) -> bool:
        return item.on_main is not None and self.connector.version_field is None

    async def send(self, items: list[_Item]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        parts: deque[tuple[list[_Item], str]] = deque([(items, self.call.idempotency_key)])
        while parts:
            part, key = parts.popleft()
            try:
                results = await self._request(part, key)
            except FatalConnectorError as exc:
                left = part + [item for rest, _ in parts for item in rest]
                return outcomes + [Outcome(item.key, error=exc) for item in left]
            except ConnectorError as exc:
                index = exc.index
                if len(part) > 1 and index is not None and 0 <= index < len(part):
                    bad = part[index]
                    outcomes.append(await self._refused(bad, exc.for_item(), key))
                    rest = part[:index] + part[index + 1 :]
                    parts.appendleft((rest, self._key(rest)))
                elif len(part) > 1 and isinstance(exc, EntryRejected):
                    half = len(part) // 2
                    parts.appendleft((part[half:], self._key(part[half:])))
                    parts.appendleft((part[:half], self._key(part[:half])))
                else:
                    error = exc.for_item() if index is not None else exc
                    outcomes.extend([await self._refused(item, error, key) for item in part])
                continue
            for item, result in zip(part, results, strict=True):
                if isinstance(result, Record):
                    outcomes.append(Outcome(item.key, record=result))
                else:
                    outcomes.append(await self._refused(item, result, key))
        return outcomes

    def _key(self, part: list[_Item]) -> str:
        return part_key(self.call.idempotency_key, [item.entry.path for item in part])

    async def _request(self, part: list[_Item], key: str) -> list[ItemOutcome]:
        if self.call.kind == "create":
            fields = [item.fields for item in part]
            return await self.connector.create_many(self.call.folder, fields, key)
        updates = [RecordUpdate(str(i.record_id), i.fields, i.if_match) for i in part]
        return await self.connector.update_many(self.call.folder, updates, key)

    async def _refused(self, item: _Item, error: ConnectorError, key: str) -> Outcome:
        """An item the service refused: its outcome, unless it only changed upstream."""
        if isinstance(error, PreconditionFailed) and item.on_main is not None:
            return await self.alone(item, part_key(key, [item.entry.path]))
        return Outcome(item.key, error=error)

    async def alone(self, item: _Item, key: str) -> Outcome:
        """An update checked against upstream changes on its own (``guarded_update``)."""
        assert item.record_id is not None and item.on_main is not None
        try:
            record = await guarded_update(
                self.connector,
                self.call.folder,
                item.record_id,
                item.fields,
                key,
                main=item.on_main,
                draft=item.entry.operation["fields"],
            )
        except ConnectorError as exc:
            return Outcome(item.key, error=exc)
        return Outcome(item.key, record=record)


@dataclass
class Published:
    key: EntryKey
    record_id: str | None
    record: JsonObject | None
    """The record as main now holds it (None for a delete)."""


@dataclass
class Failed:
    key: EntryKey
    message: str
    code: str
    details: JsonValue


@dataclass
class Verdicts:
    """What a batch of outcomes means for the pipeline, in the order to record it."""

    failed: list[Failed] = field(default_factory=list)
    published: list[Published] = field(default_factory=list)
    main_changes: list[MainChange] = field(default_factory=list)
    created: dict[str, str] = field(default_factory=dict)
    """path -> record id of records these outcomes created."""
    fatal: str | None = None
    """The run must stop (its calls stay dispatched, reconciled with the same key on resume)."""


def judge(
    outcomes: Iterable[Outcome],
    entries: Mapping[EntryKey, PipelineEntry],
    schemas: Mapping[str, FolderSchema],
) -> Verdicts:
    """Classify outcomes: a fatal error stops the run, errors fail entries, the rest publish."""
    verdicts = Verdicts()
    for outcome in outcomes:
        error = outcome.error
        if isinstance(error, FatalConnectorError):
            verdicts.fatal = error.message
            continue
        key = outcome.key
        if error is not None:
            verdicts.failed.append(Failed(key, error.message, error.code, error.details))
            continue
        entry = entries[key]
        folder = entry.operation["folder"]
        if entry.operation["type"] == "delete":
            record_id = entry.operation["record_id"]
            verdicts.main_changes.append(MainChange(entry.path, None, record_id))
            verdicts.published.append(Published(key, record_id, None))
            continue
        assert outcome.record is not None
        content = record_to_file(outcome.record, schemas[folder])
        verdicts.main_changes.append(MainChange(entry.path, content, outcome.record.id))
        verdicts.published.append(Published(key, outcome.record.id, content))
        if entry.phase == Phase.CREATE:
            verdicts.created[entry.path] = outcome.record.id
    return verdicts


__all__ = ["Outcome", "RecordIds", "UnresolvedReference", "Verdicts", "judge", "send"]
