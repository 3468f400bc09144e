"""Running a pull: mirror the service into main, folder by folder, page by page, under a lease.

A worker that claimed the pull (``Worker``) runs it here. Each page is one
transaction: the pull's progress event (naming the records the page listed),
main's changes and the "seen" marks of unchanged records; the save is
optimistic on the pull (a worker that lost its lease cannot record) and on the
workspace (a write to main racing the save makes the page look again at what
it may overwrite, see ``application.pull_diff``). A worker that resumes a pull
goes on after the last page recorded.

Records that a complete listing of a folder did not return are only
*candidates* for deletion: offset paging skips a live record when an earlier
one is deleted upstream during the listing. Each candidate is read; only the
ones the service confirms gone leave main.

A targeted pull reads every named record first, then writes them all in one
transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from eventsourcing.persistence import IntegrityError

from application.app import PublishdApplication
from application.connector import Connector, Record
from application.pull_diff import FolderMirror, PageDiff
from domain.errors import LeaseLost
from domain.ids import workspace_uuid
from domain.pull import Pull
from domain.workspace import MainChange

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
R = TypeVar("R")
MAX_SAVE_ATTEMPTS = 8
READS_IN_FLIGHT = 16
"""Candidates (and named records) read at once."""


class PullStopped(Exception):
    """The pull's lease was lost: nothing more may be recorded."""


class PullRun:
    def __init__(
        self,
        app: PublishdApplication,
        pull: Pull,
        worker: str,
        connector: Connector,
        *,
        clock: Clock,
        lease: timedelta,
    ) -> None:
        """``pull``: as this worker just claimed (and saved) it."""
        self.app = app
        self.pull_id = pull.pull_id
        self.pull = pull
        self.worker = worker
        self.connector = connector
        self.clock = clock
        self.lease = lease
        self.source = f"pull:{pull.pull_id}"
        self.workspace = app.workspace(pull.workspace_id)
        self.baseline = self.workspace.version
        """The workspace version up to which other writers' changes are accounted for."""
        self._saving = asyncio.Lock()
        """The aggregates are touched only under this lock (pages and lease renewals alternate)."""

    # --- saving -------------------------------------------------------------
    def _reload(self) -> None:
        self.pull = self.app.pull(self.pull_id)
        self.workspace = self.app.workspace(self.pull.workspace_id)
        if self.pull.lease_owner != self.worker:
            raise PullStopped(f"{self.worker} lost the lease of pull {self.pull_id}")

    def _save(self, mutate: Callable[[], None]) -> None:
        """Apply ``mutate`` to the current aggregates and save; on conflict reload and redo."""
        for _ in range(MAX_SAVE_ATTEMPTS):
            try:
                now = self.clock()
                if self.pull.lease_due(now, self.lease):
                    self.pull.claim(self.worker, now, self.lease)
                mutate()
                self.app.save_all(self.pull, self.workspace)
                return
            except IntegrityError:
                self._reload()
            except LeaseLost as exc:
                raise PullStopped(str(exc)) from exc
        raise PullStopped(f"could not record pull {self.pull_id}: too many conflicts")

    async def _locked(self, command: Callable[[], R]) -> R:
        async with self._saving:
            return await asyncio.to_thread(command)

    async def _keep_lease(self) -> None:
        """Renew the lease while a page is fetched or candidates are read (both may be slow)."""
        while True:
            await asyncio.sleep(self.lease.total_seconds() / 3)
            try:
                await self._locked(lambda: self._save(lambda: None))
            except PullStopped:
                return  # the next save of the run stops it too
            except Exception:
                log.exception("pull %s: could not renew the lease", self.pull_id)

    def _note_foreign(self, mirrors: Sequence[FolderMirror]) -> None:
        """Tell the mirrors what other writers changed in main since the baseline."""
        if self.workspace.version <= self.baseline:
            return
        ws_id = workspace_uuid(self.pull.workspace_id)
        for event in self.app.events.get(ws_id, gt=self.baseline):
            if type(event).__name__ == "MainChanged" and getattr(event, "source", None) != (
                self.source
            ):
                changes = getattr(event, "changes", [])
                for mirror in mirrors:
                    mirror.note_foreign(changes)
            self.baseline = max(self.baseline, event.originator_version)

    # --- the run --------------------------------------------------------------
    async def execute(self) -> Pull | None:
        """Run to the end; the ended pull, or None when the lease was lost."""
        renewer = asyncio.create_task(self._keep_lease())
        try:
            await self._locked(lambda: self._save(self._take_lock))
            records = self.pull.records
            if records is not None:
                await self._pull_records(records)
            else:
                for folder in self.pull.folders:
                    if not self.pull.folder_progress(folder).done:
                        await self._pull_folder(folder)
            await self._locked(lambda: self._save(self._complete))
        except PullStopped as exc:
            log.warning("pull %s stopped: %s", self.pull_id, exc)
            return None
        except Exception as exc:
            log.exception("pull %s failed", self.pull_id)
            error = str(exc) or type(exc).__name__
            try:
                await self._locked(lambda: self._fail(error))
            except PullStopped:
                return None
        finally:
            renewer.cancel()
        return self.pull

    def _take_lock(self) -> None:
        """Held since the start; taken again here for a pull recorded before pulls took it."""
        self.workspace.acquire_pull_lock(self.pull_id)

    def _complete(self) -> None:
        self.pull.complete(self.worker)
        self.workspace.release_pull_lock(self.pull_id)

    def _fail(self, error: str) -> None:
        self._reload()  # drops whatever the failed step had half-applied
        self._save(lambda: self._record_failure(error))

    def _record_failure(self, error: str) -> None:
        self.pull.fail(self.worker, error)
        self.workspace.release_pull_lock(self.pull_id)

    def _mirror(self, folders: Sequence[str]) -> list[FolderMirror]:
        """Main's copy of ``folders``, read after every change up to the baseline is projected."""
        self.baseline = self.workspace.version
        self.app.catch_up()
        mirrors = []
        for folder in folders:
            schema = self.workspace.schema(folder)
            if schema is None:
                raise LookupError(f"folder {folder!r} has no schema any more")
            known = self.app.views.main_folder_index(self.pull.workspace_id, folder)
            empties = self.connector.omits_empty_fields
            mirrors.append(FolderMirror(folder, schema, known, empty_is_absent=empties))
        return mirrors

    async def _read_all(self, folder_ids: Sequence[tuple[str, str]]) -> list[Record | None]:
        slots = asyncio.Semaphore(READS_IN_FLIGHT)

        async def read(folder: str, record_id: str) -> Record | None:
            async with slots:
                return await self.connector.read(folder, record_id)

        reads: list[Awaitable[Record | None]] = [read(f, r) for f, r in folder_ids]
        return list(await asyncio.gather(*reads))

    def _save_diffs(
        self,
        work: Sequence[tuple[FolderMirror, list[Record], list[str]]],
        progress: Callable[[str, dict[str, int]], None],
    ) -> None:
        """One transaction: each folder's changes to main, and the pull's progress for it.

        ``work``: per folder, the records the service returned and the ids it
        confirmed gone. The diffs are computed in each attempt, after the
        other writers' changes since the baseline are known.
        """
        diffs: list[tuple[FolderMirror, PageDiff]] = []

        def mutate() -> None:
            diffs.clear()
            self._note_foreign([mirror for mirror, _, _ in work])
            changes: list[MainChange] = []
            for mirror, records, gone in work:
                diff = mirror.diff(records, gone)
                diffs.append((mirror, diff))
                changes.extend(diff.changes)
            self.workspace.change_main(self.source, changes)
            for mirror, diff in diffs:
                self.workspace.mark_seen(self.source, mirror.folder, diff.seen)
                progress(mirror.folder, diff.counts)

        self._save(mutate)
        for mirror, diff in diffs:
            mirror.applied(diff)
        self.baseline = max(self.baseline, self.workspace.version)

    async def _pull_folder(self, folder: str) -> None:
        (mirror,) = await self._locked(lambda: self._mirror([folder]))
        progress = self.pull.folder_progress(folder)
        offset, page_no, returned = progress.next_offset, progress.pages, set(progress.listed)
        while True:
            page = await self.connector.list_page(folder, offset, self.connector.list_page_size)
            listed = [record.id for record in page.records]
            fresh: dict[str, Record] = {}
            for record in page.records:
                if record.id not in returned:  # a listing that shifted may return one twice
                    fresh.setdefault(record.id, record)
            last = not page.records or offset + len(listed) >= page.total
            gone: list[str] = []
            if last:
                candidates = sorted(set(mirror.known) - returned - set(listed))
                found = await self._read_all([(folder, c) for c in candidates])
                gone = [c for c, record in zip(candidates, found, strict=True) if record is None]
                fresh.update((record.id, record) for record in found if record is not None)
            records = list(fresh.values())
            await self._locked(
                self._page_command(mirror, page_no, offset, listed, records, gone, last)
            )
            returned.update(listed)
            offset += len(listed)
            page_no += 1
            if last:
                return

    def _page_command(
        self,
        mirror: FolderMirror,
        page_no: int,
        offset: int,
        listed: list[str],
        records: list[Record],
        gone: list[str],
        last: bool,
    ) -> Callable[[], None]:
        """The save of one page; the last one also settles the candidates for deletion."""

        def progress(folder: str, counts: dict[str, int]) -> None:
            self.pull.record_page(
                self.worker, folder, page_no, counts, offset=offset, listed=listed, done=last
            )

        return lambda: self._save_diffs([(mirror, records, gone)], progress)

    async def _pull_records(self, records: list[tuple[str, str]]) -> None:
        done = {f for f in self.pull.folders if self.pull.folder_progress(f).done}
        named = [(folder, record_id) for folder, record_id in records if folder not in done]
        if not named:
            return
        folders = sorted({folder for folder, _ in named})
        mirrors = await self._locked(lambda: self._mirror(folders))
        found = await self._read_all(named)
        work: list[tuple[FolderMirror, list[Record], list[str]]] = []
        for mirror in mirrors:
            mine = [
                (r, rec) for (f, r), rec in zip(named, found, strict=True) if f == mirror.folder
            ]
            alive = [rec for _, rec in mine if rec is not None]
            work.append((mirror, alive, [r for r, rec in mine if rec is None]))

        def progress(folder: str, counts: dict[str, int]) -> None:
            listed = [record_id for f, record_id in named if f == folder]
            self.pull.record_page(
                self.worker, folder, 0, counts, offset=0, listed=listed, done=True
            )

        await self._locked(lambda: self._save_diffs(work, progress))


__all__ = ["PullRun", "PullStopped"]
