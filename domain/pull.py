"""The Pull aggregate: one mirror of the external service into main."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import IllegalTransition


class Pull(Aggregate):
    @staticmethod
    def create_id(pull_id: str, **_: Any) -> UUID:
        return UUID(pull_id)

    @event("PullStarted")
    def __init__(self, pull_id: str, workspace_id: str, folders: list[str]) -> None:
        self.pull_id = pull_id
        self.workspace_id = workspace_id
        self.folders = folders
        self.state = "running"
        self.counts = {"created": 0, "updated": 0, "unchanged": 0, "deleted": 0}
        self.error: str | None = None

    def _require_running(self) -> None:
        if self.state != "running":
            raise IllegalTransition(f"pull {self.pull_id} is {self.state}")

    def record_page(self, folder: str, page: int, counts: dict[str, int]) -> None:
        self._require_running()
        self._page_pulled(folder, page, counts)

    @event("PullPageProcessed")
    def _page_pulled(self, folder: str, page: int, counts: dict[str, int]) -> None:
        for key, value in counts.items():
            self.counts[key] = self.counts.get(key, 0) + value

    def complete(self) -> None:
        self._require_running()
        self._completed(dict(self.counts))

    @event("PullCompleted")
    def _completed(self, counts: dict[str, int]) -> None:
        self.state = "completed"

    def fail(self, error: str) -> None:
        self._require_running()
        self._failed(error)

    @event("PullFailed")
    def _failed(self, error: str) -> None:
        self.state = "failed"
        self.error = error
