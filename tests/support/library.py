"""A library workspace on any event store, published to an in-memory service.

The application tests on memory and the views contract tests (memory and
PostgreSQL) drive the same commands through this: pulls and runs go to a
``CheckingConnector``, so every part of publishd is real except the service.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from application.app import PublishdApplication
from application.connector import Connector
from application.projections.memory.views import MemoryViews
from application.worker import Worker
from domain.pipeline import PublishPipeline
from domain.pull import Pull
from domain.workspace import Workspace
from tests.support.connectors import CheckingConnector

WORKSPACE = "lib"
USER = "alice"
LEASE = timedelta(seconds=30)
SCHEMAS: dict[str, Any] = {
    "authors": {
        "fields": [{"name": "favourite_book", "reference": True, "referenceTarget": "books"}]
    },
    "books": {"fields": [{"name": "author", "reference": True, "referenceTarget": "authors"}]},
}


def memory_app() -> PublishdApplication:
    """A publishd on the in-memory event store, its views fed from that store's log."""
    views = MemoryViews()
    app = PublishdApplication({"PERSISTENCE_MODULE": "eventsourcing.popo"}, views=views)
    views.follow(app.recorder)
    return app


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Library:
    app: PublishdApplication
    connector: CheckingConnector = field(init=False)
    concurrency: int = 4

    def __post_init__(self) -> None:
        self.connector = CheckingConnector(self.app)

    def setup(self) -> None:
        """The service holds two authors and two books; the workspace has pulled them."""
        self.connector.seed("authors", "a1", {"name": "Hemingway", "slug": "hemingway"})
        self.connector.seed("authors", "a2", {"name": "Woolf", "slug": "woolf"})
        self.connector.seed("books", "b1", {"title": "Old Man", "slug": "old-man", "author": "a1"})
        self.connector.seed(
            "books", "b2", {"title": "Dalloway", "slug": "dalloway", "author": "a2"}
        )
        self.app.create_workspace(WORKSPACE, {"type": "memory"})
        for folder, schema in SCHEMAS.items():
            self.app.register_schema(WORKSPACE, folder, schema)
        self.pull()

    def pull(self) -> Pull:
        started = self.app.start_pull(WORKSPACE, None)
        pull = asyncio.run(self.worker().run_pull(started.pull_id))
        assert pull is not None, "the pull's lease was taken"
        return pull

    def write(self, path: str, content: dict[str, Any], user: str = USER) -> None:
        self.app.write_draft_file(WORKSPACE, user, path, content)

    def delete(self, path: str, user: str = USER) -> None:
        self.app.delete_draft_file(WORKSPACE, user, path)

    def write_four_phases(self) -> None:
        """A draft with an edit, two creates pointing at each other, a delete and a
        backfill of the pointer that breaks the cycle (Tolstoy's favourite book:
        War is created after Tolstoy, with its author resolved)."""
        self.write(
            "books/old-man.json",
            {"id": "b1", "title": "The Old Man", "slug": "old-man", "author": "a1"},
        )
        self.write(
            "authors/tolstoy.json",
            {"name": "Tolstoy", "slug": "tolstoy", "favourite_book": "@/books/war.json"},
        )
        self.write(
            "books/war.json", {"title": "War", "slug": "war", "author": "@/authors/tolstoy.json"}
        )
        self.delete("books/dalloway.json")

    def plan(self, user: str = USER) -> PublishPipeline:
        return self.app.plan(WORKSPACE, user)

    def worker(self) -> Worker:
        def connector_for(_: Workspace) -> Connector:
            return self.connector

        return Worker(
            self.app, connector_for, clock=utc_now, lease=LEASE, concurrency=self.concurrency
        )

    def run(self, pipeline_id: str) -> str | None:
        """Run a queued pipeline to its end with one worker; its final state."""
        self.connector.pipeline_id = pipeline_id
        return asyncio.run(self.worker().run_one(pipeline_id))

    def plan_and_run(self, user: str = USER) -> tuple[str, str | None]:
        pipeline = self.plan(user)
        self.app.request_run(pipeline.pipeline_id)
        return pipeline.pipeline_id, self.run(pipeline.pipeline_id)
