"""The sandbox's data: collections of items, kept in memory, with a CMS's rules.

The rules are the ones publishd must cope with on a real content service: the
service assigns ids and computed fields, refuses references to missing items,
and refuses to delete an item that something still points at. A reverse index
(target item -> referrers) makes the delete check independent of collection
size, so the sandbox is never the bottleneck of a benchmark.

Every public method takes one lock: the store is shared between the event loop
and test threads that inspect it directly. A bulk create or update checks all
its items and applies them under that one acquisition, so no other write lands
between the check and the writes, and no reader sees half a bulk request.

``lastUpdated`` is the item's version (a client sends it back as ``If-Match``),
so the store never issues one twice: stamps are strictly increasing, a
microsecond past the last one when the clock has not moved, and past an
item's seeded value when that lies ahead of the clock.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice

from domain.json_types import JsonObject, JsonValue
from infrastructure.sandbox.bulk import ItemChange, at_index
from infrastructure.sandbox.rules import (
    MAX_DELETE,
    MAX_PAGE,
    Conflict,
    NotFound,
    PreconditionFailed,
    ReferenceField,
    StoreError,
    ValidationError,
    check_name,
    field_data,
    parse_reference_fields,
    targets,
)

CDN_BASE = "https://cdn.sandbox.local"
_TICK = timedelta(microseconds=1)

Ref = tuple[str, str]
"""(collection, item id)."""


@dataclass(slots=True)
class Item:
    id: str
    field_data: JsonObject
    created_on: str
    last_updated: str


@dataclass(slots=True)
class Collection:
    reference_fields: dict[str, ReferenceField]
    items: dict[str, Item] = field(default_factory=dict)
    """Insertion-ordered: creation order is the stable listing order."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def _iso(instant: datetime) -> str:
    return instant.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _instant(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def new_item_id() -> str:
    """24 hex characters: unguessable, so clients cannot depend on invented ids."""
    return secrets.token_hex(12)


class SandboxStore:
    """Collections, items and the reverse reference index, behind one lock."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] = utc_now,
        new_id: Callable[[], str] = new_item_id,
    ) -> None:
        self._collections: dict[str, Collection] = {}
        self._referrers: dict[Ref, set[Ref]] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._new_id = new_id
        self._last_stamp = datetime.min.replace(tzinfo=UTC)

    # -- collections -------------------------------------------------------------

    def define(self, name: str, reference_fields: dict[str, ReferenceField]) -> None:
        """Create or redefine a collection; its items are re-indexed under the new fields."""
        check_name(name)
        with self._lock:
            existing = self._collections.get(name)
            if existing is None:
                self._collections[name] = Collection(reference_fields)
                return
            for item in existing.items.values():
                self._unindex(name, existing, item)
            existing.reference_fields = reference_fields
            for item in existing.items.values():
                self._index(name, existing, item)

    def collection_totals(self) -> list[JsonObject]:
        with self._lock:
            return [{"name": n, "total": len(c.items)} for n, c in self._collections.items()]

    def load_seed(self, seed: JsonObject) -> None:
        """Load a seed document; an inconsistent seed is a ``ValueError`` naming the problem."""
        raw = seed.get("collections")
        if not isinstance(raw, dict) or not all(isinstance(c, dict) for c in raw.values()):
            raise ValueError("seed: 'collections' must be an object of objects")
        try:
            defined = {n: parse_reference_fields(c.get("referenceFields")) for n, c in raw.items()}
            for name, fields in defined.items():
                for field_name, spec in fields.items():
                    if spec.target not in defined:
                        target = spec.target
                        raise ValueError(f"seed: {name}.{field_name} targets undefined {target!r}")
                self.define(name, fields)
            with self._lock:
                now = _iso(self._stamp())
                for name, c in raw.items():
                    for entry in c.get("items", []):
                        self._put_seed_item(name, entry, now)
                for name, c in self._collections.items():
                    for item in c.items.values():
                        self._check_targets(c, item.field_data)
                        self._index(name, c, item)
        except StoreError as exc:
            raise ValueError(f"seed: {exc}") from exc

    def _put_seed_item(self, name: str, entry: JsonValue, now: str) -> None:
        if not isinstance(entry, dict) or not isinstance(entry.get("fieldData", {}), dict):
            raise ValueError(f"seed: items of {name!r} must be objects with a 'fieldData' object")
        item_id = entry.get("id") or self._new_id()
        if not isinstance(item_id, str):
            raise ValueError(f"seed: item ids in {name!r} must be strings")
        items = self._collections[name].items
        if item_id in items:
            raise ValueError(f"seed: duplicate id {item_id!r} in {name!r}")
        created = str(entry.get("createdOn", now))
        items[item_id] = Item(
            item_id,
            dict(entry.get("fieldData", {})),
            created,
            str(entry.get("lastUpdated", created)),
        )

    # -- items ---------------------------------------------------------------------

    def list_items(self, name: str, offset: int, limit: int) -> tuple[list[JsonObject], int]:
        with self._lock:
            c = self._get(name)
            page = islice(c.items.values(), offset, offset + min(limit, MAX_PAGE))
            return [render(name, item) for item in page], len(c.items)

    def get(self, name: str, item_id: str) -> JsonObject:
        with self._lock:
            c = self._get(name)
            item = c.items.get(item_id)
            if item is None:
                raise NotFound(f"no item {item_id!r} in {name!r}")
            return render(name, item)

    def create(self, name: str, fields: JsonValue) -> JsonObject:
        with self._lock:
            c = self._get(name)
            data = field_data(fields)
            self._check_targets(c, data)
            return self._insert(name, c, data)

    def create_many(self, name: str, entries: Sequence[JsonObject]) -> list[JsonObject]:
        """Create all of ``entries`` (field data) or none: the first invalid one refuses all.

        Every entry is checked before the first is stored, so entries of one
        request cannot reference each other: their ids don't exist yet.
        """
        with self._lock:
            c = self._get(name)
            for index, data in enumerate(entries):
                with at_index(index):
                    self._check_targets(c, data)
            return [self._insert(name, c, data) for data in entries]

    def update(
        self, name: str, item_id: str, fields: JsonValue, *, if_match: str | None = None
    ) -> JsonObject:
        """Merge the given fields into the item (``null`` stores null).

        With ``if_match``, only while the item's ``lastUpdated`` is exactly that:
        a write based on an older copy would silently undo someone else's.
        """
        with self._lock:
            c = self._get(name)
            item, data = self._updatable(name, c, ItemChange(item_id, fields, if_match))
            return self._merge(name, c, item, data)

    def update_many(self, name: str, changes: Sequence[ItemChange]) -> list[JsonObject]:
        """``update`` for each of ``changes``, all or none: each is checked before any applies."""
        with self._lock:
            c = self._get(name)
            checked = []
            for index, change in enumerate(changes):
                with at_index(index):
                    checked.append(self._updatable(name, c, change))
            return [self._merge(name, c, item, data) for item, data in checked]

    def delete_many(self, name: str, ids: JsonValue) -> int:
        """Delete all of ``ids`` or none: unknown ids are a 404, live referrers a 409."""
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ValidationError("'items' must be a list of item ids")
        if len(ids) > MAX_DELETE:
            raise ValidationError(f"at most {MAX_DELETE} items per delete, got {len(ids)}")
        with self._lock:
            c = self._get(name)
            doomed = dict.fromkeys(ids)
            missing = [i for i in doomed if i not in c.items]
            if missing:
                raise NotFound(f"{len(missing)} unknown item(s) in {name!r}", missing=missing)
            conflicts = list(self._conflicts(name, doomed))
            if conflicts:
                message = f"{len(conflicts)} item(s) are still referenced"
                raise Conflict(message, conflicts=conflicts)
            for item_id in doomed:
                self._remove(name, c, item_id)
            return len(doomed)

    def delete_one_unreferenced(self, name: str, candidates: Sequence[str]) -> str | None:
        """Delete the first candidate nothing points at, as a colleague might; its id or None."""
        with self._lock:
            c = self._get(name)
            for item_id in candidates:
                if item_id in c.items and not self._referrers.get((name, item_id)):
                    self._remove(name, c, item_id)
                    return item_id
            return None

    # -- internals (called with the lock held) -----------------------------------------

    def _stamp(self, previous: str | None = None) -> datetime:
        """A ``lastUpdated`` later than every one issued and than ``previous``."""
        stamp = max(self._clock(), self._last_stamp + _TICK)
        before = _instant(previous) if previous is not None else None
        if before is not None and stamp <= before:
            with contextlib.suppress(OverflowError):  # seeded at the end of time: stamp differs
                stamp = before + _TICK
        self._last_stamp = stamp
        return stamp

    def _insert(self, name: str, c: Collection, data: JsonObject) -> JsonObject:
        now = _iso(self._stamp())
        item = Item(self._new_id(), data, now, now)
        c.items[item.id] = item
        self._index(name, c, item)
        return render(name, item)

    def _updatable(self, name: str, c: Collection, change: ItemChange) -> tuple[Item, JsonObject]:
        """The item ``change`` applies to and its field data; else the 404, 412 or 400."""
        item = c.items.get(change.id)
        if item is None:
            raise NotFound(f"no item {change.id!r} in {name!r}")
        if change.if_match is not None and change.if_match != item.last_updated:
            raise PreconditionFailed(
                f"item {change.id!r} changed since {change.if_match!r}",
                lastUpdated=item.last_updated,
            )
        data = field_data(change.fields)
        self._check_targets(c, data)
        return item, data

    def _merge(self, name: str, c: Collection, item: Item, data: JsonObject) -> JsonObject:
        self._unindex(name, c, item)
        item.field_data.update(data)
        item.last_updated = _iso(self._stamp(item.last_updated))
        self._index(name, c, item)
        return render(name, item)

    def _remove(self, name: str, c: Collection, item_id: str) -> None:
        self._unindex(name, c, c.items.pop(item_id))
        self._referrers.pop((name, item_id), None)

    def _get(self, name: str) -> Collection:
        c = self._collections.get(name)
        if c is None:
            raise NotFound(f"no collection {name!r}")
        return c

    def _check_targets(self, c: Collection, data: JsonObject) -> None:
        for field_name, spec in c.reference_fields.items():
            if field_name not in data:
                continue
            target = self._collections.get(spec.target)
            missing = [
                i
                for i in targets(data[field_name], spec, field_name)
                if target is None or i not in target.items
            ]
            if missing:
                raise ValidationError(
                    f"field {field_name!r} references missing {spec.target} item(s)",
                    field=field_name,
                    missing=missing,
                )

    def _outgoing(self, c: Collection, item: Item) -> Iterator[Ref]:
        for field_name, spec in c.reference_fields.items():
            value = item.field_data.get(field_name)
            if isinstance(value, str):
                yield spec.target, value
            elif isinstance(value, list):
                yield from ((spec.target, v) for v in value if isinstance(v, str))

    def _index(self, name: str, c: Collection, item: Item) -> None:
        for ref in self._outgoing(c, item):
            self._referrers.setdefault(ref, set()).add((name, item.id))

    def _unindex(self, name: str, c: Collection, item: Item) -> None:
        for ref in self._outgoing(c, item):
            referrers = self._referrers.get(ref)
            if referrers is not None:
                referrers.discard((name, item.id))
                if not referrers:
                    del self._referrers[ref]

    def _conflicts(self, name: str, doomed: Iterable[str]) -> Iterator[JsonObject]:
        """Referrers outside the batch: items deleted together may point at each other."""
        batch = {(name, i) for i in doomed}
        for item_id in doomed:
            live = sorted(self._referrers.get((name, item_id), set()) - batch)
            if live:
                yield {
                    "id": item_id,
                    "referencedBy": [{"collection": col, "id": ref_id} for col, ref_id in live],
                }


def render(collection: str, item: Item) -> JsonObject:
    return {
        "id": item.id,
        "fieldData": dict(item.field_data),
        "createdOn": item.created_on,
        "lastUpdated": item.last_updated,
        "cdnUrl": f"{CDN_BASE}/{collection}/{item.id}",
    }
