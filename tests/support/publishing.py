"""A publishd on a real PostgreSQL schema, talking to a real sandbox over HTTP.

Used by the integration tests of pulls and runs: it drives the application
directly (the HTTP layer has its own tests) but every part underneath is real.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from application.queries import Queries
from domain.draft import Draft
from domain.pipeline import PublishPipeline
from infrastructure.postgres.database import Database
from infrastructure.sandbox.app import create_app
from infrastructure.settings import Settings
from interfaces.bootstrap import Runtime
from tests.support.servers import running_server

LIBRARY_COLLECTIONS: dict[str, Any] = {
    "authors": {"favourite_book": {"target": "books", "multiple": False}},
    "books": {"author": {"target": "authors", "multiple": False}},
    "menus": {"items": {"target": "books", "multiple": True}},
}
LIBRARY_SCHEMAS: dict[str, Any] = {
    "authors": {
        "fields": [{"name": "favourite_book", "reference": True, "referenceTarget": "books"}]
    },
    "books": {"fields": [{"name": "author", "reference": True, "referenceTarget": "authors"}]},
    "menus": {
        "fields": [
            {"name": "items", "reference": True, "referenceTarget": "books", "multiple": True}
        ]
    },
}


@dataclass
class Harness:
    runtime: Runtime
    sandbox_url: str
    workspace: str = "lib"

    @property
    def app(self) -> Any:
        return self.runtime.app

    @property
    def queries(self) -> Queries:
        return Queries(self.runtime.app, self.runtime.views)

    # --- the sandbox, seen from outside -----------------------------------------------
    def sandbox(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(method, f"{self.sandbox_url}{path}", timeout=10, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def items(self, collection: str) -> list[dict[str, Any]]:
        return list(self.sandbox("GET", f"/collections/{collection}/items?limit=100")["items"])

    def all_items(self, collection: str) -> list[dict[str, Any]]:
        """Every item of ``collection``, page by page (``items`` stops at the first 100)."""
        found: list[dict[str, Any]] = []
        while True:
            page = self.sandbox(
                "GET", f"/collections/{collection}/items?limit=100&offset={len(found)}"
            )
            found.extend(page["items"])
            if not page["items"] or len(found) >= int(page["total"]):
                return found

    def stats(self) -> dict[str, Any]:
        """The sandbox's counters (``GET /_admin/stats``); a counter never hit is absent."""
        stats: dict[str, Any] = self.sandbox("GET", "/_admin/stats")
        return stats

    def item_by(self, collection: str, field: str, value: Any) -> dict[str, Any]:
        found = [i for i in self.items(collection) if i["fieldData"].get(field) == value]
        assert len(found) == 1, f"{len(found)} items in {collection} with {field}={value!r}"
        return found[0]

    def create_item(self, collection: str, field_data: dict[str, Any]) -> str:
        item = self.sandbox(
            "POST", f"/collections/{collection}/items", json={"fieldData": field_data}
        )
        return str(item["id"])

    def set_faults(self, **faults: Any) -> None:
        self.sandbox("PUT", "/_admin/faults", json=faults)

    # --- publishd -----------------------------------------------------------------------
    def setup_library(self) -> dict[str, str]:
        """Collections, schemas and a main with two authors, three books and a menu."""
        for name, fields in LIBRARY_COLLECTIONS.items():
            self.sandbox("PUT", f"/collections/{name}", json={"referenceFields": fields})
        hem = self.create_item("authors", {"name": "Hemingway", "slug": "hemingway"})
        woolf = self.create_item("authors", {"name": "Woolf", "slug": "woolf"})
        oldman = self.create_item("books", {"title": "Old Man", "slug": "old-man", "author": hem})
        light = self.create_item(
            "books", {"title": "Lighthouse", "slug": "lighthouse", "author": woolf}
        )
        dalloway = self.create_item(
            "books", {"title": "Dalloway", "slug": "dalloway", "author": woolf}
        )
        self.create_item("menus", {"slug": "main", "items": [oldman, light, dalloway]})
        self.app.create_workspace(self.workspace, {"type": "sandbox", "base_url": self.sandbox_url})
        for folder, schema in LIBRARY_SCHEMAS.items():
            self.app.register_schema(self.workspace, folder, schema)
        self.pull()
        return {
            "hemingway": hem,
            "woolf": woolf,
            "oldman": oldman,
            "lighthouse": light,
            "dalloway": dalloway,
        }

    def pull(self) -> Any:
        pull = self.app.start_pull(self.workspace, None)

        async def go() -> Any:
            try:
                return await self.runtime.worker().run_pull(pull.pull_id)
            finally:
                await self.runtime.aclose_connectors()

        return asyncio.run(go())

    def write(self, path: str, content: dict[str, Any], user: str = "alice") -> None:
        self.app.write_draft_file(self.workspace, user, path, content)

    def write_many(self, files: Mapping[str, dict[str, Any]], user: str = "alice") -> None:
        """Write many draft files in one save: the events of ``write`` for each, one transaction.

        A command per file costs a round trip each; tests of runs over hundreds
        of records would spend most of their time writing the draft.
        """
        workspace = self.app.workspace(self.workspace)
        checked = {workspace.check_path(path): content for path, content in files.items()}

        def command() -> int:
            draft = self.app.draft(self.workspace, user) or Draft(
                workspace_id=self.workspace, user=user
            )
            for path, content in checked.items():
                draft.write_file(path, content)
            position: int = self.app.save_all(draft)
            return position

        self.app.retrying(command)

    def delete(self, path: str, user: str = "alice") -> None:
        self.app.delete_draft_file(self.workspace, user, path)

    def main(self, path: str) -> dict[str, Any] | None:
        self.app.catch_up()
        found: dict[str, Any] | None = self.runtime.views.main_file(self.workspace, path)
        return found

    def plan_and_run(self, user: str = "alice", **worker: Any) -> PublishPipeline:
        pipeline = self.app.plan(self.workspace, user)
        self.app.request_run(pipeline.pipeline_id)
        return self.run(pipeline.pipeline_id, **worker)

    def run(self, pipeline_id: str, **worker: Any) -> PublishPipeline:
        async def go() -> None:
            try:
                await self.runtime.worker(**worker).run_one(pipeline_id)
            finally:
                await self.runtime.aclose_connectors()

        asyncio.run(go())
        pipeline: PublishPipeline = self.app.pipeline(pipeline_id)
        return pipeline

    def run_with_concurrency(self, pipeline_id: str, concurrency: int) -> PublishPipeline:
        """``run`` with at most ``concurrency`` calls in flight (1: calls strictly in turn)."""

        async def go() -> None:
            worker = self.runtime.worker()
            worker.concurrency = concurrency
            try:
                await worker.run_one(pipeline_id)
            finally:
                await self.runtime.aclose_connectors()

        asyncio.run(go())
        pipeline: PublishPipeline = self.app.pipeline(pipeline_id)
        return pipeline


@contextmanager
def projecting_runtime(settings: Settings) -> Iterator[Runtime]:
    """A runtime on ``settings`` with its projections running in a thread, as in ``serve``."""
    runtime = Runtime.build(settings)
    stop = threading.Event()
    projector = threading.Thread(target=runtime.run_projections, args=(stop,), daemon=True)
    projector.start()
    try:
        yield runtime
    finally:
        stop.set()
        projector.join(timeout=10)
        runtime.close()


@contextmanager
def harness(database: Database, schema: str, **faults: Any) -> Iterator[Harness]:
    settings = Settings(database_url=database.conninfo, db_schema=schema)
    with projecting_runtime(settings) as runtime, running_server(create_app(None)) as url:
        h = Harness(runtime, url)
        if faults:
            h.set_faults(**faults)
        yield h
