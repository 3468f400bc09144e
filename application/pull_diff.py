"""What pulled records change in main: the diff against main's copy, less what others wrote.

A pull fetches a page, then saves what it changes. Between the two, another
writer (a publish, a refresh) may have written some of those records; the page
is older than that write and must not replace it. So the diff is computed again
inside each attempt of the save, from a ``FolderMirror`` that knows main's copy
as the pull read it and every path and record another writer touched since;
those are left alone for the rest of the pull (the next pull sees them afresh).

Pure: no I/O, so an attempt that loses a race is simply computed again.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from application.connector import Record
from application.records import record_to_file
from domain.json_types import JsonObject, JsonValue, json_equal
from domain.pull import COUNTS
from domain.schema import FolderSchema
from domain.workspace import MainChange

_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(value: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    return _SLUG.sub("-", ascii_text.lower()).strip("-")[:80]


class FilenameAllocator:
    """Filenames for new records: slug of the schema's field, else the record id; unique.

    ``taken`` is read, never written: a diff that is thrown away (its save lost
    a race) must not hold on to the names it chose.
    """

    def __init__(self, schema: FolderSchema, taken: set[str]) -> None:
        self.schema = schema
        self.taken = taken
        self.new: set[str] = set()

    def allocate(self, content: JsonObject, record_id: str) -> str:
        raw = content.get(self.schema.filename_from or "") if self.schema.filename_from else None
        base = slugify(raw) if isinstance(raw, str) else ""
        base = base or slugify(record_id) or "record"
        name, n = f"{base}.json", 2
        while name in self.taken or name in self.new:
            name, n = f"{base}-{n}.json", n + 1
        self.new.add(name)
        return name


@dataclass
class PageDiff:
    changes: list[MainChange] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    """Records unchanged since main's copy (their FileIndex ``last_seen_at`` moves)."""
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))


class FolderMirror:
    """One folder of main as a pull knows it, kept current by the pull's own saves."""

    def __init__(
        self,
        folder: str,
        schema: FolderSchema,
        known: dict[str, tuple[str, JsonObject]],
        *,
        empty_is_absent: bool = False,
    ) -> None:
        self.folder = folder
        self.schema = schema
        self.empty_is_absent = empty_is_absent
        """The service leaves empty values out of what it returns (Airtable): main's ``""``,
        ``[]`` or ``false`` and a field the record lacks are the same, not a change."""
        self.known = dict(known)
        """record id -> (filename, content), as main holds them."""
        self.taken = {filename for filename, _ in known.values()}
        self.foreign_ids: set[str] = set()
        self.foreign_paths: set[str] = set()

    def _filename(self, path: str) -> str | None:
        prefix = f"{self.folder}/"
        rest = path[len(prefix) :] if path.startswith(prefix) else None
        return rest if rest and "/" not in rest else None

    def note_foreign(self, changes: Iterable[JsonValue]) -> None:
        """Another writer changed these files (``MainChange`` dicts) since the pull read it."""
        for change in changes:
            if not isinstance(change, dict):
                continue
            path, record_id = change.get("path"), change.get("record_id")
            filename = self._filename(path) if isinstance(path, str) else None
            if filename is None:
                continue
            self.foreign_paths.add(f"{self.folder}/{filename}")
            self.taken.add(filename)
            if isinstance(record_id, str):
                self.foreign_ids.add(record_id)

    def _left_alone(self, record_id: str) -> bool:
        if record_id in self.foreign_ids:
            return True
        existing = self.known.get(record_id)
        return existing is not None and f"{self.folder}/{existing[0]}" in self.foreign_paths

    def diff(self, records: Iterable[Record], gone: Iterable[str] = ()) -> PageDiff:
        """Main's changes for ``records`` (as the service returned them) and ``gone`` (ids the
        service confirmed it no longer has). A record another writer touched counts as
        unchanged: the pull leaves main's copy as it is."""
        diff = PageDiff()
        names = FilenameAllocator(self.schema, self.taken)
        for record in records:
            if self._left_alone(record.id):
                diff.counts["unchanged"] += 1
                continue
            content = record_to_file(record, self.schema)
            existing = self.known.get(record.id)
            if existing is None:
                path = f"{self.folder}/{names.allocate(content, record.id)}"
                diff.changes.append(MainChange(path, content, record.id))
                diff.counts["created"] += 1
            elif not self._same(existing[1], content):
                diff.changes.append(MainChange(f"{self.folder}/{existing[0]}", content, record.id))
                diff.counts["updated"] += 1
            else:
                diff.seen.append(record.id)
                diff.counts["unchanged"] += 1
        for record_id in gone:
            existing = self.known.get(record_id)
            if existing is None or self._left_alone(record_id):
                continue
            diff.changes.append(MainChange(f"{self.folder}/{existing[0]}", None, record_id))
            diff.counts["deleted"] += 1
        return diff

    def _same(self, main: JsonObject, pulled: JsonObject) -> bool:
        if self.empty_is_absent:
            return json_equal(_without_empties(main), _without_empties(pulled))
        return json_equal(main, pulled)

    def applied(self, diff: PageDiff) -> None:
        """The diff was saved: main now holds it."""
        for change in diff.changes:
            filename = self._filename(change.path)
            if filename is None or change.record_id is None:
                continue
            if change.content is None:
                self.known.pop(change.record_id, None)
                self.taken.discard(filename)
            else:
                self.known[change.record_id] = (filename, change.content)
                self.taken.add(filename)


def _without_empties(content: JsonObject) -> JsonObject:
    return {k: v for k, v in content.items() if not _empty(v)}


def _empty(value: JsonValue) -> bool:
    return value is None or value is False or value == "" or value == []


__all__ = ["FilenameAllocator", "FolderMirror", "PageDiff", "slugify"]
