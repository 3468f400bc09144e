"""The three content services publishd publishes to, behind one test-side interface.

The connector contract (``tests/integration/test_connector_contract.py``) and
the crash test (``tests/e2e/test_connector_crash.py``) say one thing about
every service: the sandbox, the Webflow fake and the Airtable fake. What
differs between them is kept here, each in its ``Service``:

- how it starts (in-process, ``running_server``) and the workspace config
  that reaches it (the token by environment variable, never in the config);
- folders ``authors`` and ``books`` with ``books.author`` pointing at
  ``authors`` (on Airtable a linked-record field, so its values are arrays and
  the schema says ``"multiple": true``); every record has ``name`` and
  ``slug`` (Webflow requires both);
- its own way of misbehaving: a 429 storm, lost responses;
- a side door that reads back every record (paging where the API pages) and
  writes as a colleague would, past the connector under test.

Every request the connector sends passes through ``_Observed``, which counts
it (method, path) and can add latency, so "how many create requests" is
asked the same way of all three, and the side door's own requests, marked
with a header, are not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
import pytest

from infrastructure.connectors.airtable import AirtableConnector
from infrastructure.fakes import airtable as airtable_fake
from infrastructure.fakes import webflow as webflow_fake
from infrastructure.sandbox.app import create_app as sandbox_app
from tests.support.servers import running_server

KINDS = ("sandbox", "webflow", "airtable")
SIDE_DOOR = "x-test-side-door"
"""A request with this header is the test's own, not the connector's: it is not counted."""
FOLDERS = ("authors", "books")


@dataclass(frozen=True)
class Seen:
    method: str
    path: str


class _Observed:
    """ASGI middleware: counts the connector's requests and delays their answers.

    The delay (``latency_s``) holds the answer after the service has handled
    the request, so a worker killed meanwhile leaves a write applied whose
    outcome it never recorded: the case a resumed run must reconcile.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[Seen] = []
        self.latency_s = 0.0
        self._lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_admin"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if SIDE_DOOR.encode() in headers:
            await self.app(scope, receive, send)
            return
        with self._lock:
            self.seen.append(Seen(scope["method"], scope["path"]))
        latency = self.latency_s

        async def held(message: Any) -> None:
            if latency and message["type"] == "http.response.start":
                await asyncio.sleep(latency)
            await send(message)

        await self.app(scope, receive, held)


@dataclass
class Row:
    """One record as the service holds it, in the shape the tests compare."""

    id: str
    slug: str
    name: str | None
    author: str | None
    """``books.author``: the id it points at (None: empty)."""


class Service(ABC):
    """One content service, started in-process, seen from the test's side."""

    kind: ClassVar[str]
    token: ClassVar[str] = ""
    token_env: ClassVar[str] = ""
    create_limit: ClassVar[int]
    missing_author: ClassVar[str]
    """An id of the service's shape that no author has."""
    rejection: ClassVar[str]
    """Part of the service's message when a book points at ``missing_author``."""

    def __init__(self) -> None:
        self.url = ""
        self._observed: _Observed | None = None
        self.http = httpx.Client(timeout=10, headers={SIDE_DOOR: "1"})

    # -- life ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def running(self, monkeypatch: pytest.MonkeyPatch | None = None) -> Iterator[Service]:
        """Serve the service until the block ends; the token is set in this process's env."""
        if monkeypatch is not None and self.token_env:
            monkeypatch.setenv(self.token_env, self.token)
        self._observed = _Observed(self.app())
        try:
            with running_server(self._observed) as url:
                self.url = url
                self.quiet()
                yield self
        finally:
            self.http.close()

    def env(self) -> dict[str, str]:
        """What a publishd process needs in its environment to reach this service."""
        return {self.token_env: self.token} if self.token_env else {}

    @abstractmethod
    def app(self) -> Any:
        """A fresh ASGI app of the service with empty folders ``authors`` and ``books``."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """The workspace's connector config (the token only by reference)."""

    def schemas(self) -> dict[str, dict[str, Any]]:
        reference = {"name": "author", "reference": True, "referenceTarget": "authors"}
        if self.multiple:
            reference["multiple"] = True
        return {
            "authors": {"readOnly": self.read_only(), "filenameFrom": "slug"},
            "books": {
                "fields": [reference],
                "readOnly": self.read_only(),
                "filenameFrom": "slug",
            },
        }

    def read_only(self) -> list[str]:
        return []

    multiple: ClassVar[bool] = False
    """Whether a reference value is a list (Airtable's linked records)."""

    def points_at(self, draft_path: str) -> Any:
        """A draft's value of ``books.author`` pointing at another draft file."""
        pointer = f"@/{draft_path}"
        return [pointer] if self.multiple else pointer

    def raw_reference(self, record_id: str) -> Any:
        return [record_id] if self.multiple else record_id

    # -- faults -------------------------------------------------------------------------

    @abstractmethod
    def quiet(self) -> None:
        """No faults and no rate limit: the service as the plain tests want it."""

    @abstractmethod
    def storm(self) -> None:
        """429s, each service's own way; a client that retries gets through."""

    @abstractmethod
    def lose_responses(self) -> None:
        """Some writes are applied and then answered 502."""

    def fault_counts(self) -> dict[str, int]:
        """How often the service misbehaved: ``rate_limited``, ``lost_responses`` (0 if never)."""
        stats = self.http.get(f"{self.url}/_admin/stats").json()
        return {key: int(stats.get(key, 0)) for key in ("rate_limited", "lost_responses")}

    def set_latency(self, seconds: float) -> None:
        assert self._observed is not None
        self._observed.latency_s = seconds

    # -- counting -----------------------------------------------------------------------

    def requests(self) -> int:
        """The connector's requests so far (the side door's not counted)."""
        assert self._observed is not None
        return len(self._observed.seen)

    def reset_counts(self) -> None:
        assert self._observed is not None
        self._observed.seen.clear()

    def create_requests(self, folder: str) -> int:
        """Requests that may create records in ``folder`` (Airtable's upserts are PATCHes)."""
        assert self._observed is not None
        path = self.items_path(folder)
        methods = self.create_methods
        return sum(1 for s in self._observed.seen if s.path == path and s.method in methods)

    create_methods: ClassVar[frozenset[str]] = frozenset({"POST"})

    @abstractmethod
    def items_path(self, folder: str) -> str:
        """The path the connector writes a folder's records to."""

    # -- the side door ------------------------------------------------------------------

    @abstractmethod
    def rows(self, folder: str) -> list[Row]:
        """Every record of ``folder`` as the service holds it now."""

    @abstractmethod
    def write(self, folder: str, name: str, slug: str, author: str | None = None) -> str:
        """Create a record directly in the service; its id."""

    def by_slug(self, folder: str) -> dict[str, list[Row]]:
        found: dict[str, list[Row]] = {}
        for row in self.rows(folder):
            found.setdefault(row.slug, []).append(row)
        return found

    def duplicates(self) -> int:
        """Records beyond the first with one slug, over both folders."""
        return sum(len(rows) - 1 for folder in FOLDERS for rows in self.by_slug(folder).values())


class Sandbox(Service):
    kind = "sandbox"
    create_limit = 100
    missing_author = "no-such-author"
    rejection = "references missing"

    def app(self) -> Any:
        reference = {"author": {"target": "authors", "multiple": False}}
        seed = {"collections": {"authors": {}, "books": {"referenceFields": reference}}}
        return sandbox_app(seed)

    def config(self) -> dict[str, Any]:
        return {"type": "sandbox", "base_url": self.url}

    def read_only(self) -> list[str]:
        return ["createdOn", "lastUpdated"]

    def _faults(self, **faults: Any) -> None:
        self.http.put(f"{self.url}/_admin/faults", json=faults).raise_for_status()

    def quiet(self) -> None:
        self._faults()

    def storm(self) -> None:
        # seed 50 draws 429, 429, ok, 429, 429, ok, ...: the first requests are refused
        # and none more than 3 times in a row, within the connector's retry budget
        self._faults(rate_limit_429_rate=0.5, retry_after_s=0, seed=50)

    def lose_responses(self) -> None:
        self._faults(lost_response_rate=0.5, seed=15)

    def items_path(self, folder: str) -> str:
        return f"/collections/{folder}/items"

    def rows(self, folder: str) -> list[Row]:
        found: list[dict[str, Any]] = []
        while True:
            response = self.http.get(
                f"{self.url}{self.items_path(folder)}",
                params={"offset": len(found), "limit": 100},
            )
            response.raise_for_status()
            page = response.json()
            found.extend(page["items"])
            if not page["items"] or len(found) >= int(page["total"]):
                break
        return [_row(item["id"], item["fieldData"], self.multiple) for item in found]

    def write(self, folder: str, name: str, slug: str, author: str | None = None) -> str:
        data: dict[str, Any] = {"name": name, "slug": slug}
        if author is not None:
            data["author"] = author
        response = self.http.post(f"{self.url}{self.items_path(folder)}", json={"fieldData": data})
        response.raise_for_status()
        return str(response.json()["id"])


WEBFLOW_COLLECTIONS = {"authors": "64f0000000000000000000a1", "books": "64f0000000000000000000b1"}


class Webflow(Service):
    kind = "webflow"
    token = "wf-contract-token-0123456789"
    token_env = "PUBLISHD_TEST_WEBFLOW_TOKEN"
    create_limit = 100
    missing_author = "64f00000000000000000dead"
    rejection = "referenced item not found"

    def app(self) -> Any:
        seed: list[dict[str, Any]] = [
            {"id": WEBFLOW_COLLECTIONS["authors"], "displayName": "Authors", "fields": []},
            {
                "id": WEBFLOW_COLLECTIONS["books"],
                "displayName": "Books",
                "fields": [
                    {
                        "slug": "author",
                        "type": "Reference",
                        "validations": {"collectionId": WEBFLOW_COLLECTIONS["authors"]},
                    }
                ],
            },
        ]
        return webflow_fake.create_app(seed, token=self.token)

    def config(self) -> dict[str, Any]:
        return {
            "type": "webflow",
            "base_url": f"{self.url}/v2",
            "site_id": "64f000000000000000000001",
            "token": {"env": self.token_env},
            "collections": dict(WEBFLOW_COLLECTIONS),
            "live": True,
            "requests_per_minute": 600_000,
        }

    def read_only(self) -> list[str]:
        return list(("createdOn", "lastUpdated", "lastPublished", "isDraft", "isArchived"))

    def _faults(self, **faults: Any) -> None:
        response = self.http.put(f"{self.url}/_admin/faults", json={"rate_limit": None, **faults})
        response.raise_for_status()

    def quiet(self) -> None:
        self._faults()

    def storm(self) -> None:
        # three refusals outright, then a window of 4 requests a second that a client
        # paced at 10,000 a second runs into (Retry-After: the whole seconds to wait)
        self._faults(refuse_next=3, retry_after_s=0, rate_limit=4, rate_window_s=1.0)

    def lose_responses(self) -> None:
        self._faults(lose_next_writes=2)

    def items_path(self, folder: str) -> str:
        return f"/v2/collections/{WEBFLOW_COLLECTIONS[folder]}/items/live"

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def rows(self, folder: str) -> list[Row]:
        found: list[dict[str, Any]] = []
        path = f"/v2/collections/{WEBFLOW_COLLECTIONS[folder]}/items"
        while True:
            response = self.http.get(
                f"{self.url}{path}",
                params={"offset": len(found), "limit": 100},
                headers=self._auth(),
            )
            response.raise_for_status()
            page = response.json()
            found.extend(page["items"])
            if not page["items"] or len(found) >= int(page["pagination"]["total"]):
                break
        return [_row(item["id"], item["fieldData"], self.multiple) for item in found]

    def write(self, folder: str, name: str, slug: str, author: str | None = None) -> str:
        data: dict[str, Any] = {"name": name, "slug": slug}
        if author is not None:
            data["author"] = author
        response = self.http.post(
            f"{self.url}/v2/collections/{WEBFLOW_COLLECTIONS[folder]}/items",
            json={"fieldData": data},
            headers=self._auth(),
        )
        response.raise_for_status()
        return str(response.json()["items"][0]["id"])


AIRTABLE_BASE = "appCONTRACT00001"
AIRTABLE_TABLES = {"authors": "Authors", "books": "Books"}


class Airtable(Service):
    kind = "airtable"
    token = "patCONTRACT98765.xyz"
    token_env = "PUBLISHD_TEST_AIRTABLE_TOKEN"
    create_limit = 10
    missing_author = "recNOSUCHAUTHOR01"
    rejection = "does not exist"
    multiple = True
    create_methods = frozenset({"POST", "PATCH"})
    rate_penalty_s = 0.3
    """The connector's pause after a 429 in these tests (Airtable's own is 30 s)."""

    def app(self) -> Any:
        seed = {
            "base_id": AIRTABLE_BASE,
            "tables": {
                "Authors": {
                    "unique": "slug",
                    "fields": {"slug": "singleLineText", "name": "singleLineText"},
                },
                "Books": {
                    "unique": "slug",
                    "fields": {
                        "slug": "singleLineText",
                        "name": "singleLineText",
                        "author": {
                            "type": "multipleRecordLinks",
                            "linkedTable": "Authors",
                            "inverse": "books",
                        },
                    },
                },
            },
        }
        return airtable_fake.create_app(seed, token=self.token)

    @contextlib.contextmanager
    def running(self, monkeypatch: pytest.MonkeyPatch | None = None) -> Iterator[Service]:
        """As ``Service.running``; in-process connectors also pause after a 429 briefly.

        Airtable refuses a base for 30 s after a 429 and the connector waits that
        long; the fake's penalty is shortened for tests, so the connector's is too.
        A worker subprocess keeps the 30 s: the crash test sets no rate limit.
        """
        with contextlib.ExitStack() as stack:
            if monkeypatch is not None:
                defaults = AirtableConnector.__init__.__kwdefaults__
                assert defaults is not None
                monkeypatch.setitem(defaults, "rate_penalty", self.rate_penalty_s)
            yield stack.enter_context(super().running(monkeypatch))

    def config(self) -> dict[str, Any]:
        return {
            "type": "airtable",
            "base_url": f"{self.url}/v0",
            "base_id": AIRTABLE_BASE,
            "token": {"env": self.token_env},
            "tables": dict(AIRTABLE_TABLES),
            "requests_per_second": 10_000,
        }

    def read_only(self) -> list[str]:
        return ["createdTime"]

    def schemas(self) -> dict[str, dict[str, Any]]:
        schemas = super().schemas()
        # authors.books mirrors Books.author: the service keeps it, publishd never sends it
        schemas["authors"]["readOnly"] = [*self.read_only(), "books"]
        return schemas

    def _faults(self, **faults: Any) -> None:
        response = self.http.put(f"{self.url}/_admin/faults", json={"rate_limit": None, **faults})
        response.raise_for_status()

    def quiet(self) -> None:
        self._faults()

    def storm(self) -> None:
        self._faults(rate_limit=2, rate_window_s=1.0, penalty_s=self.rate_penalty_s)

    def lose_responses(self) -> None:
        self._faults(lose_responses=2)

    def items_path(self, folder: str) -> str:
        return f"/v0/{AIRTABLE_BASE}/{AIRTABLE_TABLES[folder]}"

    def rows(self, folder: str) -> list[Row]:
        response = self.http.get(f"{self.url}/_admin/tables/{AIRTABLE_TABLES[folder]}")
        response.raise_for_status()
        records = response.json()["records"]
        return [_row(r["id"], r["fields"], self.multiple) for r in records]

    def write(self, folder: str, name: str, slug: str, author: str | None = None) -> str:
        values: dict[str, Any] = {"name": name, "slug": slug}
        if author is not None:
            values["author"] = [author]
        response = self.http.post(
            f"{self.url}{self.items_path(folder)}",
            json={"records": [{"fields": values}]},
            headers={"Authorization": f"Bearer {self.token}"},
        )
        response.raise_for_status()
        return str(response.json()["records"][0]["id"])


def _row(record_id: str, data: dict[str, Any], multiple: bool) -> Row:
    author = data.get("author")
    if multiple:
        assert author is None or isinstance(author, list), author
        assert author is None or len(author) <= 1, author
        author = author[0] if author else None
    return Row(str(record_id), str(data.get("slug")), data.get("name"), author or None)


def service(kind: str) -> Service:
    """A new, not yet started service of ``kind`` (one of ``KINDS``)."""
    services: dict[str, type[Service]] = {
        "sandbox": Sandbox,
        "webflow": Webflow,
        "airtable": Airtable,
    }
    return services[kind]()
