"""A seeded sandbox over HTTP for the connector's tests, with a side door into it.

The side door is how a test sets faults, reads counters, and writes "as a
colleague" in the CMS, past the connector under test.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from infrastructure.connectors.sandbox import SandboxConnector
from infrastructure.sandbox.app import create_app
from tests.support.servers import running_server

SEED: dict[str, Any] = {
    "collections": {
        "authors": {"items": [{"id": "a1", "fieldData": {"name": "Ada"}}]},
        "books": {
            "referenceFields": {"author": {"target": "authors", "multiple": False}},
            "items": [{"id": "b1", "fieldData": {"title": "T", "author": "a1"}}],
        },
        "site1/menus": {},
    }
}


class SideDoor:
    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url)

    def faults(self, **options: Any) -> None:
        assert self.http.put("/_admin/faults", json=options).status_code == 200

    def stats(self) -> dict[str, Any]:
        return dict(self.http.get("/_admin/stats").json())

    def ids(self, collection: str) -> list[str]:
        body = self.http.get(f"/collections/{collection}/items").json()
        return [item["id"] for item in body["items"]]

    def item(self, collection: str, item_id: str) -> dict[str, Any]:
        return dict(self.http.get(f"/collections/{collection}/items/{item_id}").json())

    def edit(self, collection: str, item_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        response = self.http.patch(
            f"/collections/{collection}/items/{item_id}", json={"fieldData": fields}
        )
        assert response.status_code == 200
        return dict(response.json())


@contextlib.contextmanager
def seeded_sandbox() -> Iterator[SideDoor]:
    with running_server(create_app(SEED)) as url:
        door = SideDoor(url)
        try:
            yield door
        finally:
            door.http.close()


@contextlib.asynccontextmanager
async def connector(url: str, **options: Any) -> AsyncIterator[SandboxConnector]:
    """The connector under test, with backoffs short enough for tests."""
    options = {"backoff_base": 0.001, "backoff_max": 0.01, "timeout": 5.0, **options}
    client = SandboxConnector(url, **options)
    try:
        yield client
    finally:
        await client.aclose()
