"""One call of a run: resolving its pointers, sending it, and reading its outcome.

The run engine (``application.runner``) decides *when* calls go out and
records them in rounds; this module is everything about a call itself, behind
the ``Connector`` port: the record ids its @-references resolve to at the
moment of sending, the connector method it becomes, and what its outcome
means for the pipeline (published with a main change, failed, or fatal for
the run).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from application.connector import Connector, ConnectorError, FatalConnectorError, Record
from application.records import record_to_file
from application.upstream import guarded_update
from domain.calls import Call
from domain.entries import PipelineEntry
from domain.errors import DomainError
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
    call: Call
    record: Record | None = None
    error: ConnectorError | None = None


class RecordIds:
    """Where @-references point: records this pipeline created, else FileIndex.

    FileIndex is asked once per phase for every target of its calls
    (``preload``), so sending costs no query.
    """

    def __init__(self, created: dict[str, str]) -> None:
        self.created = created
        """path -> record id of the records this pipeline created; grows as creates publish."""
        self.indexed: dict[FilePath, str] = {}

    def preload(self, index: FileIndexLookup, calls: Iterable[Call]) -> None:
        targets = {
            target for call in calls for _, target in iter_at_refs(call.operation.get("fields", {}))
        }
        if targets:
            found = index([(t.folder, t.filename) for t in targets])
            for (folder, filename), record_id in found.items():
                self.indexed[FilePath(folder, filename)] = record_id

    def lookup(self, target: FilePath) -> str | None:
        return self.created.get(target.path) or self.indexed.get(target)


async def send(
    connector: Connector,
    call: Call,
    entries: Mapping[EntryKey, PipelineEntry],
    record_ids: RecordIds,
    main: Mapping[str, JsonObject] | None = None,
) -> Outcome:
    """Send one call; every failure comes back as the outcome's error, never raised.

    ``main``: main's copy of the records the phase updates, by path, when the
    run must not overwrite upstream changes (``application.upstream``); None
    when it may.
    """
    op = call.operation
    try:
        if op["type"] == "delete":
            ids = [entries[k].operation["record_id"] for k in call.keys]
            await connector.delete_many(op["folder"], ids, call.idempotency_key)
            return Outcome(call)
        fields = resolve_refs(op["fields"], record_ids.lookup)
        for where, target in iter_at_refs(fields):
            raise UnresolvedReference(f"{where} points at {target.path}, which has no record id")
        if op["type"] == "create":
            record = await connector.create(op["folder"], fields, call.idempotency_key)
        else:
            path = entries[call.keys[0]].path
            record_id = op.get("record_id") or record_ids.created.get(path)
            if record_id is None:
                raise UnresolvedReference(f"{path} has no record id to update")
            on_main = None if main is None or op.get("record_id") is None else main.get(path)
            if on_main is None:
                record = await connector.update(
                    op["folder"], record_id, fields, call.idempotency_key
                )
            else:
                record = await guarded_update(
                    connector,
                    op["folder"],
                    record_id,
                    fields,
                    call.idempotency_key,
                    main=on_main,
                    draft=op["fields"],
                )
        return Outcome(call, record=record)
    except ConnectorError as exc:
        return Outcome(call, error=exc)
    except DomainError as exc:
        return Outcome(call, error=ConnectorError(exc.message))


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
        if error is not None:
            verdicts.failed.extend(
                Failed(key, error.message, error.code, error.details) for key in outcome.call.keys
            )
            continue
        for key in outcome.call.keys:
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
