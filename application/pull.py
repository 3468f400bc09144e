"""Pull: mirror the external service into main, folder by folder, page by page.

Each page is one transaction: the pull's progress event, main's changes and the
"seen" marks of unchanged records. Records that a *complete* pull of a folder
did not return were deleted upstream and leave main and FileIndex.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata

from application.app import PublishdApplication
from application.connector import Connector
from application.records import record_to_file
from domain.json_types import JsonObject, json_equal
from domain.pull import Pull
from domain.schema import FolderSchema
from domain.workspace import MainChange

_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(value: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    return _SLUG.sub("-", ascii_text.lower()).strip("-")[:80]


class FilenameAllocator:
    """Filenames for new records: slug of the schema's field, else the record id; unique."""

    def __init__(self, schema: FolderSchema, taken: set[str]) -> None:
        self.schema = schema
        self.taken = set(taken)

    def allocate(self, content: JsonObject, record_id: str) -> str:
        raw = content.get(self.schema.filename_from or "") if self.schema.filename_from else None
        base = slugify(raw) if isinstance(raw, str) else ""
        base = base or slugify(record_id) or "record"
        name, n = f"{base}.json", 2
        while name in self.taken:
            name, n = f"{base}-{n}.json", n + 1
        self.taken.add(name)
        return name


async def run_pull(app: PublishdApplication, pull_id: str, connector: Connector) -> Pull:
    """Execute a started pull to its end; failures are recorded as ``PullFailed``."""
    pull = await asyncio.to_thread(app.pull, pull_id)
    try:
        for folder in pull.folders:
            await _pull_folder(app, pull_id, pull.workspace_id, folder, connector)
    except Exception as exc:
        await asyncio.to_thread(_record_failure, app, pull_id, str(exc) or type(exc).__name__)
        raise
    return await asyncio.to_thread(_complete, app, pull_id)


def _complete(app: PublishdApplication, pull_id: str) -> Pull:
    pull = app.pull(pull_id)
    pull.complete()
    app.save_all(pull)
    return pull


def _record_failure(app: PublishdApplication, pull_id: str, error: str) -> None:
    pull = app.pull(pull_id)
    if pull.state == "running":
        pull.fail(error)
        app.save_all(pull)


async def _pull_folder(
    app: PublishdApplication, pull_id: str, workspace_id: str, folder: str, connector: Connector
) -> None:
    workspace = await asyncio.to_thread(app.workspace, workspace_id)
    schema = workspace.schema(folder)
    assert schema is not None
    await asyncio.to_thread(app.catch_up)
    known: dict[str, tuple[str, JsonObject]] = await asyncio.to_thread(
        app.views.main_folder_index, workspace_id, folder
    )
    names = FilenameAllocator(schema, {filename for filename, _ in known.values()})
    returned: set[str] = set()
    offset, page_no = 0, 0
    while True:
        page = await connector.list_page(folder, offset, connector.list_page_size)
        changes: list[MainChange] = []
        seen: list[str] = []
        counts = {"created": 0, "updated": 0, "unchanged": 0, "deleted": 0}
        for record in page.records:
            returned.add(record.id)
            content = record_to_file(record, schema)
            existing = known.get(record.id)
            if existing is None:
                path = f"{folder}/{names.allocate(content, record.id)}"
                changes.append(MainChange(path, content, record.id))
                counts["created"] += 1
            elif not json_equal(existing[1], content):
                path = f"{folder}/{existing[0]}"
                changes.append(MainChange(path, content, record.id))
                counts["updated"] += 1
            else:
                seen.append(record.id)
                counts["unchanged"] += 1
        offset += len(page.records)
        last = not page.records or offset >= page.total
        if last:
            for record_id, (filename, _) in sorted(known.items()):
                if record_id not in returned:
                    changes.append(MainChange(f"{folder}/{filename}", None, record_id))
                    counts["deleted"] += 1
        await asyncio.to_thread(
            _record_page, app, pull_id, workspace_id, folder, page_no, changes, seen, counts
        )
        page_no += 1
        if last:
            return


def _record_page(
    app: PublishdApplication,
    pull_id: str,
    workspace_id: str,
    folder: str,
    page_no: int,
    changes: list[MainChange],
    seen: list[str],
    counts: dict[str, int],
) -> None:
    def command() -> int:
        pull = app.pull(pull_id)
        workspace = app.workspace(workspace_id)
        workspace.ensure_not_publishing()
        workspace.change_main(f"pull:{pull_id}", changes)
        workspace.mark_seen(f"pull:{pull_id}", folder, seen)
        pull.record_page(folder, page_no, counts)
        return app.save_all(pull, workspace)

    app.retrying(command)


__all__ = ["FilenameAllocator", "run_pull", "slugify"]
