"""What the HTTP command tests share: one live publishd, per-test sandboxes, tokens.

``Publishd`` is a real ``publishd serve`` in-process: the runtime on its own
PostgreSQL schema, ``build_http_app`` (API, streams, worker, projections) under
a real uvicorn. It lives for the session; tests keep out of each other's way by
each using a fresh workspace id. ``Sandbox`` is a fresh sandbox CMS per test,
behind a gate that can hold every item write: a pipeline then stays ``running``
for as long as a test needs it to, with no sleeps and no timing guesses.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from infrastructure.postgres.database import Database
from infrastructure.sandbox.app import create_app as create_sandbox
from infrastructure.settings import Settings
from interfaces.bootstrap import Runtime, build_http_app
from tests.support.publishing import LIBRARY_COLLECTIONS, LIBRARY_SCHEMAS
from tests.support.servers import running_server

MAX_REQUEST_BYTES = 256 * 1024
"""Small, so a 413 costs a quarter of a megabyte on the wire, not five."""


def new_workspace_id() -> str:
    return f"w{uuid.uuid4().hex[:12]}"


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is ``status`` with the contract's error body naming ``code``."""
    assert response.status_code == status, (response.status_code, response.text)
    body: dict[str, Any] = response.json()
    assert body["error"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    assert set(body) <= {"error", "message", "details"}, body
    return body


@dataclass
class Publishd:
    base_url: str
    runtime: Runtime
    http: httpx.Client
    admin_token: str

    def token(self, workspace: str, scopes: str = "read,write,publish") -> str:
        return self.runtime.tokens.create_token(workspace, scopes.split(",") if scopes else [])

    def request(
        self, method: str, path: str, *, token: str | None = None, auth: bool = True, **kw: Any
    ) -> httpx.Response:
        headers = dict(kw.pop("headers", {}))
        if auth:
            headers.setdefault("Authorization", f"Bearer {token or self.admin_token}")
        return self.http.request(method, path, headers=headers, **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("DELETE", path, **kw)

    def ok(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        """The request succeeds with ``status``; its JSON body (None when empty)."""
        response = self.request(method, path, **kw)
        assert response.status_code == status, (method, path, response.status_code, response.text)
        return response.json() if response.content else None

    def head(self) -> int:
        return self.runtime.app.head()

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Poll ``check`` until it returns something truthy (a condition, not a sleep)."""
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            found = check()
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def wait_state(self, pipeline_id: str, *states: str) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            status: dict[str, Any] = self.ok("GET", f"/pipelines/{pipeline_id}")
            return status if status["state"] in states else None

        found: dict[str, Any] = self.wait_for(f"{pipeline_id} in {states}", reached)
        return found


@contextmanager
def serve_publishd(database: Database) -> Iterator[Publishd]:
    """A publishd on its own schema, dropped afterwards."""
    schema = f"api_{uuid.uuid4().hex[:12]}"
    settings = Settings(
        database_url=database.conninfo,
        db_schema=schema,
        lease_seconds=5,
        max_request_bytes=MAX_REQUEST_BYTES,
        # the fuzzer and the threaded tests go faster than a person; the limit has its own test
        rate_limit=100_000,
        rate_limit_burst=100_000,
    )
    runtime = Runtime.build(settings)
    try:
        with (
            running_server(build_http_app(runtime)) as url,
            httpx.Client(base_url=url, timeout=60) as http,
        ):
            admin = runtime.tokens.create_token(None, [], admin=True)
            yield Publishd(url, runtime, http, admin)
    finally:
        runtime.close()
        with database.connect(autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


class WriteGate:
    """ASGI middleware: while closed, item writes wait (the service is 'slow')."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._open = threading.Event()
        self._open.set()
        self.held = 0

    def close(self) -> None:
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in ("POST", "PATCH", "DELETE")
            and "/items" in scope["path"]
            and not self._open.is_set()
        ):
            self.held += 1
            await asyncio.to_thread(self._open.wait, 30)
        await self.app(scope, receive, send)


@dataclass
class Sandbox:
    url: str
    gate: WriteGate
    http: httpx.Client
    ids: dict[str, str] = field(default_factory=dict)

    def call(self, method: str, path: str, **kw: Any) -> Any:
        response = self.http.request(method, path, **kw)
        response.raise_for_status()
        return response.json() if response.content else None

    def define(self, collections: dict[str, Any]) -> None:
        for name, fields in collections.items():
            self.call("PUT", f"/collections/{name}", json={"referenceFields": fields})

    def create(self, collection: str, field_data: dict[str, Any]) -> str:
        item = self.call("POST", f"/collections/{collection}/items", json={"fieldData": field_data})
        return str(item["id"])

    def items(self, collection: str) -> list[dict[str, Any]]:
        return list(self.call("GET", f"/collections/{collection}/items?limit=100")["items"])

    def item_by(self, collection: str, field_name: str, value: Any) -> dict[str, Any]:
        found = [i for i in self.items(collection) if i["fieldData"].get(field_name) == value]
        assert len(found) == 1, f"{len(found)} items in {collection} with {field_name}={value!r}"
        return found[0]


@contextmanager
def serve_sandbox() -> Iterator[Sandbox]:
    gate = WriteGate(create_sandbox())
    with running_server(gate) as url, httpx.Client(base_url=url, timeout=30) as http:
        try:
            yield Sandbox(url, gate, http)
        finally:
            gate.open()


def library(api: Publishd, sandbox: Sandbox, ws: str | None = None) -> str:
    """A workspace over the sandbox's library (2 authors, 3 books, a menu), pulled to main.

    Built through the HTTP API itself: create, three schema PUTs, a waited pull.
    """
    ws = ws or new_workspace_id()
    sandbox.define(LIBRARY_COLLECTIONS)
    hem = sandbox.create("authors", {"name": "Hemingway", "slug": "hemingway"})
    woolf = sandbox.create("authors", {"name": "Woolf", "slug": "woolf"})
    oldman = sandbox.create("books", {"title": "Old Man", "slug": "old-man", "author": hem})
    light = sandbox.create("books", {"title": "Lighthouse", "slug": "lighthouse", "author": woolf})
    dalloway = sandbox.create("books", {"title": "Dalloway", "slug": "dalloway", "author": woolf})
    sandbox.create("menus", {"slug": "main", "items": [oldman, light, dalloway]})
    sandbox.ids.update(
        hemingway=hem, woolf=woolf, oldman=oldman, lighthouse=light, dalloway=dalloway
    )
    connector = {"type": "sandbox", "base_url": sandbox.url}
    api.ok("POST", "/workspaces", 201, json={"id": ws, "connector": connector})
    for folder, schema in LIBRARY_SCHEMAS.items():
        api.ok("PUT", f"/workspaces/{ws}/schemas/{folder}", json=schema)
    pulled = api.ok("POST", f"/workspaces/{ws}/pulls?wait=true")
    assert pulled["state"] == "completed" and pulled["created"] == 6, pulled
    return ws


def draft_url(ws: str, user: str = "alice") -> str:
    return f"/workspaces/{ws}/drafts/{user}"


def write(api: Publishd, ws: str, path: str, content: dict[str, Any], user: str = "alice") -> None:
    api.ok("PUT", f"{draft_url(ws, user)}/files/{path}", json=content)


def main_file(api: Publishd, ws: str, path: str) -> dict[str, Any]:
    found: dict[str, Any] = api.ok("GET", f"/workspaces/{ws}/files/{path}")
    return found


def plan(api: Publishd, ws: str, user: str = "alice") -> dict[str, Any]:
    found: dict[str, Any] = api.ok("POST", f"{draft_url(ws, user)}/plans", 201)
    return found


def edit_title(api: Publishd, ws: str, path: str, title: str, user: str = "alice") -> None:
    write(api, ws, path, {**main_file(api, ws, path), "title": title}, user)
