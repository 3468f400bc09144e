"""The Pull aggregate: one mirror of the external service into main, run as a leased job.

A pull outlives the process that started it: workers claim it with a lease,
as they claim pipelines, and every recording command names its worker, so a
worker that slept through its lease cannot record (its save also loses to the
new holder's ``PullClaimed`` in optimistic concurrency). Each page it records
names the records the listing returned; a worker that resumes the pull reads
from there where to go on and which records it has already counted.

The scope is whole folders (``{"folders": [...]}``) or named records
(``{"records": [{"folder", "record_id"}, ...]}``); streams from before scopes
existed hold only ``folders``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import IllegalTransition, LeaseLost
from domain.json_types import JsonObject

COUNTS = ("created", "updated", "unchanged", "deleted")


@dataclass
class FolderProgress:
    """How far the pull got in one folder: enough to resume without counting a record twice."""

    pages: int = 0
    """Pages recorded: the number of the next one."""
    next_offset: int = 0
    """Where the listing goes on (offset paging)."""
    listed: set[str] = field(default_factory=set)
    """Every record id a recorded page returned (and so counted)."""
    done: bool = False
    """The listing ended and the records it did not return were settled."""


class Pull(Aggregate):
    @staticmethod
    def create_id(pull_id: str, **_: Any) -> UUID:
        return UUID(pull_id)

    @event("PullStarted")
    def __init__(
        self,
        pull_id: str,
        workspace_id: str,
        folders: list[str],
        scope: JsonObject | None = None,
    ) -> None:
        self.pull_id = pull_id
        self.workspace_id = workspace_id
        self.folders = folders
        self.scope: JsonObject = {"folders": list(folders)} if scope is None else scope
        self.state = "running"
        self.counts = dict.fromkeys(COUNTS, 0)
        self.error: str | None = None
        self.lease_owner: str | None = None
        self.lease_expires_at: str | None = None
        self.progress: dict[str, FolderProgress] = {}

    @property
    def records(self) -> list[tuple[str, str]] | None:
        """``(folder, record_id)`` of a targeted pull; None for a pull of whole folders."""
        named = self.scope.get("records")
        if not isinstance(named, list):
            return None
        return [(str(r["folder"]), str(r["record_id"])) for r in named if isinstance(r, dict)]

    def folder_progress(self, folder: str) -> FolderProgress:
        return self.progress.get(folder) or FolderProgress()

    @property
    def is_terminal(self) -> bool:
        return self.state != "running"

    def _require_worker(self, worker: str) -> None:
        if self.state != "running":
            raise IllegalTransition(f"pull {self.pull_id} is {self.state}", {"state": self.state})
        if self.lease_owner != worker:
            raise LeaseLost(f"worker {worker} does not hold the lease of pull {self.pull_id}")

    # --- leases -----------------------------------------------------------
    def lease_expired(self, now: datetime) -> bool:
        return self.lease_expires_at is None or datetime.fromisoformat(self.lease_expires_at) <= now

    def runnable(self, now: datetime) -> bool:
        """Whether a worker may claim it now: running, and nobody's lease is live."""
        return self.state == "running" and self.lease_expired(now)

    def claim(self, worker: str, now: datetime, lease: timedelta) -> None:
        """Take (or renew) the lease. Refused while another worker's lease is live."""
        if self.state != "running":
            raise IllegalTransition(f"pull {self.pull_id} is {self.state}", {"state": self.state})
        expires_at = (now + lease).isoformat()
        if self.lease_owner == worker:
            self._lease_renewed(worker, expires_at)
        elif self.lease_expired(now):
            self._claimed(worker, expires_at, self.lease_owner)
        else:
            raise LeaseLost(
                f"pull {self.pull_id} is leased by {self.lease_owner} until {self.lease_expires_at}"
            )

    def lease_due(self, now: datetime, lease: timedelta) -> bool:
        """Whether the holder should renew: less than half of its lease is left."""
        expires = self.lease_expires_at
        return expires is None or datetime.fromisoformat(expires) - now < lease / 2

    @event("PullClaimed")
    def _claimed(self, worker: str, expires_at: str, previous: str | None) -> None:
        self.lease_owner = worker
        self.lease_expires_at = expires_at

    @event("PullLeaseRenewed")
    def _lease_renewed(self, worker: str, expires_at: str) -> None:
        self.lease_expires_at = expires_at

    # --- progress ---------------------------------------------------------
    def record_page(
        self,
        worker: str,
        folder: str,
        page: int,
        counts: dict[str, int],
        *,
        offset: int,
        listed: list[str],
        done: bool,
    ) -> None:
        """One page of ``folder``: refused out of turn, so no page is ever counted twice."""
        self._require_worker(worker)
        progress = self.folder_progress(folder)
        if folder not in self.folders or progress.done or page != progress.pages:
            raise IllegalTransition(
                f"pull {self.pull_id} cannot record page {page} of {folder!r}: "
                f"{'done' if progress.done else f'next is page {progress.pages}'}"
            )
        self._page_processed(folder, page, counts, offset, listed, done)

    @event("PullPageProcessed")
    def _page_processed(
        self,
        folder: str,
        page: int,
        counts: dict[str, int],
        offset: int = 0,
        listed: list[str] | None = None,
        done: bool = False,
    ) -> None:
        for key, value in counts.items():
            self.counts[key] = self.counts.get(key, 0) + value
        progress = self.progress.setdefault(folder, FolderProgress())
        progress.pages = page + 1
        progress.listed.update(listed or ())
        progress.next_offset = max(progress.next_offset, offset + len(listed or ()))
        progress.done = done

    @property
    def folders_done(self) -> bool:
        return all(self.folder_progress(folder).done for folder in self.folders)

    def complete(self, worker: str) -> None:
        self._require_worker(worker)
        if not self.folders_done:
            raise IllegalTransition(f"pull {self.pull_id} has folders left to pull")
        self._completed(dict(self.counts))

    @event("PullCompleted")
    def _completed(self, counts: dict[str, int]) -> None:
        self.state = "completed"
        self.lease_owner = None
        self.lease_expires_at = None

    def fail(self, worker: str, error: str) -> None:
        self._require_worker(worker)
        self._failed(error)

    @event("PullFailed")
    def _failed(self, error: str) -> None:
        self.state = "failed"
        self.error = error
        self.lease_owner = None
        self.lease_expires_at = None
