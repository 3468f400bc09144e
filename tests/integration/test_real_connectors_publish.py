"""A pull, a publish and a second pull through the Webflow and Airtable connectors.

Everything is real but the services: publishd on PostgreSQL with its
projections, a worker, and each service's local fake over HTTP (the fakes in
``infrastructure/fakes`` implement the documented endpoints, limits and error
shapes). The token reaches the connector only through the environment
variable the workspace config names; it is in no event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from infrastructure.fakes import airtable as airtable_fake
from infrastructure.fakes import webflow as webflow_fake
from infrastructure.postgres.database import Database
from infrastructure.settings import Settings
from interfaces.bootstrap import Runtime
from interfaces.connectors_check import Report, check
from tests.support.publishing import projecting_runtime
from tests.support.servers import running_server

pytestmark = pytest.mark.timeout(120)

WF_TOKEN = "wf-secret-token-0123456789"
AT_TOKEN = "patSECRET9876543210.xyz"
AUTHORS, BOOKS = "64f0000000000000000000a1", "64f0000000000000000000b1"
ADA, BABBAGE = "64f0000000000000000a0001", "64f0000000000000000a0002"
WEBFLOW_SEED: list[dict[str, Any]] = [
    {
        "id": AUTHORS,
        "displayName": "Authors",
        "fields": [
            {"slug": "favourite_book", "type": "Reference", "validations": {"collectionId": BOOKS}}
        ],
        "items": [
            {"id": ADA, "fieldData": {"name": "Ada", "slug": "ada"}},
            {"id": BABBAGE, "fieldData": {"name": "Babbage", "slug": "babbage"}},
        ],
    },
    {
        "id": BOOKS,
        "displayName": "Books",
        "fields": [
            {"slug": "author", "type": "Reference", "validations": {"collectionId": AUTHORS}}
        ],
        "items": [
            {
                "id": "64f0000000000000000b0001",
                "fieldData": {"name": "Notes", "slug": "notes", "author": BABBAGE},
            }
        ],
    },
]
SCHEMAS: dict[str, Any] = {
    "authors": {
        "fields": [{"name": "favourite_book", "reference": True, "referenceTarget": "books"}],
        "readOnly": [
            "createdOn",
            "lastUpdated",
            "lastPublished",
            "isDraft",
            "isArchived",
            "cmsLocaleId",
        ],
    },
    "books": {
        "fields": [{"name": "author", "reference": True, "referenceTarget": "authors"}],
        "readOnly": [
            "createdOn",
            "lastUpdated",
            "lastPublished",
            "isDraft",
            "isArchived",
            "cmsLocaleId",
        ],
    },
}


@pytest.fixture
def runtime(database: Database, schema: str) -> Iterator[Runtime]:
    with projecting_runtime(Settings(database_url=database.conninfo, db_schema=schema)) as rt:
        yield rt


def pull(runtime: Runtime, workspace: str) -> str:
    started = runtime.app.start_pull(workspace, None)

    async def go() -> Any:
        try:
            return await runtime.worker().run_pull(started.pull_id)
        finally:
            await runtime.aclose_connectors()

    asyncio.run(go())
    state: str = runtime.app.pull(started.pull_id).state
    return state


def publish(runtime: Runtime, workspace: str) -> Any:
    pipeline = runtime.app.plan(workspace, "alice")
    runtime.app.request_run(pipeline.pipeline_id)

    async def go() -> None:
        try:
            await runtime.worker().run_one(pipeline.pipeline_id)
        finally:
            await runtime.aclose_connectors()

    asyncio.run(go())
    return runtime.app.pipeline(pipeline.pipeline_id)


def checked(runtime: Runtime, workspace: str) -> Report:
    """``publishd connectors check``'s report, in one event loop with its connector."""

    async def go() -> Report:
        try:
            ws = runtime.app.workspace(workspace)
            return await check(ws, runtime.connector_for(ws))
        finally:
            await runtime.aclose_connectors()

    return asyncio.run(go())


def main_file(runtime: Runtime, workspace: str, path: str) -> dict[str, Any] | None:
    runtime.app.catch_up()
    found: dict[str, Any] | None = runtime.views.main_file(workspace, path)
    return found


def no_token_in_events(runtime: Runtime, token: str) -> bool:
    notifications = runtime.app.recorder.select_notifications(1, 1_000_000)
    return all(token.encode() not in n.state for n in notifications)


def test_webflow_pull_publish_with_a_cycle_and_pull_again(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBLISHD_TEST_WEBFLOW_TOKEN", WF_TOKEN)
    with running_server(webflow_fake.create_app(WEBFLOW_SEED, token=WF_TOKEN)) as url:
        app = runtime.app
        config = {
            "type": "webflow",
            "base_url": f"{url}/v2",
            "site_id": "64f000000000000000000001",
            "token": {"env": "PUBLISHD_TEST_WEBFLOW_TOKEN"},
            "collections": {"authors": AUTHORS, "books": BOOKS},
            "live": True,
            "requests_per_minute": 600,
        }
        app.create_workspace("wf", config)
        for folder, folder_schema in SCHEMAS.items():
            app.register_schema("wf", folder, folder_schema)
        report = checked(runtime, "wf")
        assert report.problems == [], report.problems
        assert pull(runtime, "wf") == "completed"
        ada = main_file(runtime, "wf", "authors/ada.json")
        assert ada is not None and ada["id"] == ADA

        app.write_draft_file("wf", "alice", "authors/ada.json", {**ada, "name": "Ada Lovelace"})
        app.write_draft_file(
            "wf",
            "alice",
            "authors/tolstoy.json",
            {"name": "Tolstoy", "slug": "tolstoy", "favourite_book": "@/books/war.json"},
        )
        app.write_draft_file(
            "wf",
            "alice",
            "books/war.json",
            {"name": "War", "slug": "war", "author": "@/authors/tolstoy.json"},
        )
        app.delete_draft_file("wf", "alice", "authors/babbage.json")
        pipeline = publish(runtime, "wf")

        assert pipeline.state == "completed", pipeline.counts()
        live = httpx.get(
            f"{url}/v2/collections/{AUTHORS}/items",
            headers={"Authorization": f"Bearer {WF_TOKEN}"},
        ).json()["items"]
        by_slug = {i["fieldData"]["slug"]: i for i in live}
        books = httpx.get(
            f"{url}/v2/collections/{BOOKS}/items",
            headers={"Authorization": f"Bearer {WF_TOKEN}"},
        ).json()["items"]
        war = next(b for b in books if b["fieldData"]["slug"] == "war")
        notes = next(b for b in books if b["fieldData"]["slug"] == "notes")
        assert set(by_slug) == {"ada", "tolstoy"}  # Babbage deleted after Notes let go
        assert by_slug["ada"]["fieldData"]["name"] == "Ada Lovelace"
        assert war["fieldData"]["author"] == by_slug["tolstoy"]["id"]
        assert by_slug["tolstoy"]["fieldData"]["favourite_book"] == war["id"]
        assert notes["fieldData"].get("author") in (None, "")
        assert pull(runtime, "wf") == "completed"
        tolstoy = main_file(runtime, "wf", "authors/tolstoy.json")
        assert tolstoy is not None and tolstoy["favourite_book"] == war["id"]
        assert main_file(runtime, "wf", "authors/babbage.json") is None
        assert no_token_in_events(runtime, WF_TOKEN)


AT_BASE = "appTESTBASE00001"
AIRTABLE_SEED: dict[str, Any] = {
    "base_id": AT_BASE,
    "tables": {
        "Authors": {
            "unique": "slug",
            "fields": {"slug": "singleLineText", "name": "singleLineText"},
            "records": [{"id": "recAUTHOR000000A1", "fields": {"slug": "ada", "name": "Ada"}}],
        },
        "Books": {
            "unique": "slug",
            "fields": {
                "slug": "singleLineText",
                "title": "singleLineText",
                "author": {
                    "type": "multipleRecordLinks",
                    "linkedTable": "Authors",
                    "inverse": "books",
                },
            },
        },
    },
}
AIRTABLE_SCHEMAS: dict[str, Any] = {
    # authors.books is the inverse of Books.author: the service keeps it, publishd never sends it
    "authors": {"readOnly": ["createdTime", "books"]},
    "books": {
        "fields": [
            {"name": "author", "reference": True, "referenceTarget": "authors", "multiple": True}
        ],
        "readOnly": ["createdTime"],
    },
}


def test_airtable_pull_publish_and_pull_again(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBLISHD_TEST_AIRTABLE_TOKEN", AT_TOKEN)
    with running_server(airtable_fake.create_app(AIRTABLE_SEED, token=AT_TOKEN)) as url:
        app = runtime.app
        config = {
            "type": "airtable",
            "base_url": f"{url}/v0",
            "base_id": AT_BASE,
            "token": {"env": "PUBLISHD_TEST_AIRTABLE_TOKEN"},
            "tables": {"authors": "Authors", "books": "Books"},
            "requests_per_second": 5,
        }
        app.create_workspace("at", config)
        for folder, folder_schema in AIRTABLE_SCHEMAS.items():
            app.register_schema("at", folder, folder_schema)
        report = checked(runtime, "at")
        assert report.problems == [], report.problems
        assert pull(runtime, "at") == "completed"
        ada = main_file(runtime, "at", "authors/ada.json")
        assert ada is not None and ada["name"] == "Ada"

        app.write_draft_file("at", "alice", "authors/ada.json", {**ada, "name": "Ada Lovelace"})
        app.write_draft_file(
            "at", "alice", "authors/woolf.json", {"name": "Woolf", "slug": "woolf"}
        )
        for n in range(12):  # two batches of at most 10
            app.write_draft_file(
                "at",
                "alice",
                f"books/b{n:02}.json",
                {"title": f"B{n}", "slug": f"b{n:02}", "author": ["@/authors/woolf.json"]},
            )
        pipeline = publish(runtime, "at")

        assert pipeline.state == "completed", pipeline.counts()
        assert pull(runtime, "at") == "completed"
        woolf = main_file(runtime, "at", "authors/woolf.json")
        ada = main_file(runtime, "at", "authors/ada.json")
        assert woolf is not None and ada is not None and ada["name"] == "Ada Lovelace"
        for n in range(12):
            book = main_file(runtime, "at", f"books/b{n:02}.json")
            assert book is not None and book["author"] == [woolf["id"]]
        assert sorted(woolf["books"]) == sorted(
            main_file(runtime, "at", f"books/b{n:02}.json")["id"]
            for n in range(12)  # type: ignore[index]
        )
        assert no_token_in_events(runtime, AT_TOKEN)
