"""The services ``bench.calls`` publishes to: the sandbox, the Webflow fake, the Airtable fake.

The bench's question is the same for each (how many requests does a large
draft cost, at the rate the service allows?), but each service is seeded,
limited and counted its own way, and wants its own record shapes: Webflow
requires ``name`` and ``slug`` on every item; Airtable's link fields are
arrays, and each has an inverse field on the linked table that the service
maintains, so publishd's schema marks it read-only (never sent, no phantom
change). A ``Service`` hides those differences behind one small surface.

Every service runs in its own process, as ``bench.run``'s sandbox does: a
fake in a thread of the bench would share the interpreter lock with the
engine it measures. Each is seeded and pulled with its limit off; ``limit``
then turns it on at the service's documented rate in a fresh window, and
``reset_stats`` zeroes the request counts, so the run alone is measured.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from bench.run import sandbox_process
from bench.sandbox import free_port
from domain.json_types import JsonObject, JsonValue

TOKEN_VARIABLE = "PUBLISHD_BENCH_SERVICE_TOKEN"
"""The variable a fake's token reaches the connector through (configs hold only its name)."""
SETUP_RATE = 100_000
"""The connector's rate during seeding and the pull of main: no pacing to speak of."""
STARTUP_TIMEOUT_S = 20.0
FAKE = """
import uvicorn
from infrastructure.fakes.{module} import create_app

uvicorn.run(create_app(token={token!r}), host="127.0.0.1", port={port},
            log_level="warning", access_log=False, ws="none")
"""


@dataclass(frozen=True)
class Rate:
    """``requests`` per ``window_s`` seconds, as the service documents its limit."""

    requests: int
    window_s: float

    @property
    def per_minute(self) -> float:
        return self.requests * 60 / self.window_s

    def __str__(self) -> str:
        return f"{self.requests} per {self.window_s:g} s"


@dataclass(frozen=True)
class Counts:
    """What the service counted since ``reset_stats``."""

    requests: int
    rate_limited: int
    duplicates: int


class Service(ABC):
    """One service under the bench: started, seeded, limited, counted, checked."""

    name: str
    schemas: dict[str, Any]
    """publishd's folder schemas for the service's collections (``authors``, ``books``)."""
    conditional_writes = False
    """Whether its connector has a ``version_field`` (updates batch under ``fail`` too)."""

    def __init__(self, rate: Rate) -> None:
        self.rate = rate
        self.url = ""
        self._admin: httpx.Client | None = None

    @property
    def admin(self) -> httpx.Client:
        if self._admin is None:
            raise RuntimeError("the service is not running")
        return self._admin

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        with self._process() as url:
            self.url = url
            self._admin = httpx.Client(base_url=url, timeout=30)
            try:
                yield
            finally:
                self._admin.close()
                self._admin = None

    @abstractmethod
    def _process(self) -> contextlib.AbstractContextManager[str]: ...

    @abstractmethod
    def connector(self, *, setup: bool) -> JsonObject:
        """The workspace's connector config: at ``SETUP_RATE`` for setup, else at ``rate``."""

    @abstractmethod
    def seed(self, authors: int, books: int) -> None:
        """Main: ``author-{a}``, ``book-{b}`` (by author ``b % authors``), with the limit off."""

    def author(self, j: int, favourite: str | None) -> JsonObject:
        """A new author of the draft; ``favourite``: the path of a new book it points at."""
        fields: JsonObject = {"name": f"New author {j}", "slug": f"new-author-{j}"}
        if favourite is not None:
            fields["favourite_book"] = self._pointer(favourite)
        return fields

    def book(self, i: int, author: str) -> JsonObject:
        """A new book of the draft, by the author at path ``author``."""
        return {"title": f"New book {i}", "slug": f"new-book-{i}", "author": self._pointer(author)}

    def _pointer(self, path: str) -> JsonValue:
        return f"@/{path}"

    @abstractmethod
    def limit(self, on: bool) -> None:
        """The service's documented limit, in a fresh window (on), or none at all (off)."""

    @abstractmethod
    def reset_stats(self) -> None: ...

    @abstractmethod
    def counts(self) -> Counts: ...

    @abstractmethod
    def totals(self) -> dict[str, int]:
        """How many records each collection holds now (limit off)."""


class Sandbox(Service):
    """publishd's own demo service: Webflow-like bulk endpoints, ``--rate-limit`` per window."""

    name = "sandbox"
    conditional_writes = True
    schemas: dict[str, Any] = {
        "authors": {
            "fields": [{"name": "favourite_book", "reference": True, "referenceTarget": "books"}]
        },
        "books": {"fields": [{"name": "author", "reference": True, "referenceTarget": "authors"}]},
    }
    _references: dict[str, Any] = {
        "authors": {"favourite_book": {"target": "books", "multiple": False}},
        "books": {"author": {"target": "authors", "multiple": False}},
    }

    def _process(self) -> contextlib.AbstractContextManager[str]:
        return sandbox_process()

    def connector(self, *, setup: bool) -> JsonObject:
        config: JsonObject = {"type": "sandbox", "base_url": self.url}
        if not setup:
            config["requests_per_minute"] = self.rate.per_minute
        return config

    def seed(self, authors: int, books: int) -> None:
        for name, fields in self._references.items():
            self.admin.put(f"/collections/{name}", json={"referenceFields": fields})
        ids = self._bulk(
            "authors", [{"name": f"Author {a}", "slug": f"author-{a}"} for a in range(authors)]
        )
        self._bulk(
            "books",
            [
                {"title": f"Book {b}", "slug": f"book-{b}", "author": ids[b % authors]}
                for b in range(books)
            ],
        )

    def _bulk(self, collection: str, items: list[JsonObject]) -> list[str]:
        ids: list[str] = []
        for start in range(0, len(items), 100):
            body = {"items": [{"fieldData": fields} for fields in items[start : start + 100]]}
            response = self.admin.post(f"/collections/{collection}/items", json=body)
            ids.extend(str(item["id"]) for item in response.raise_for_status().json()["items"])
        return ids

    def limit(self, on: bool) -> None:
        faults = {"rate_limit": self.rate.requests, "rate_window_s": self.rate.window_s}
        self.admin.put("/_admin/faults", json=faults if on else {}).raise_for_status()

    def reset_stats(self) -> None:
        self.admin.delete("/_admin/stats").raise_for_status()

    def counts(self) -> Counts:
        stats = self.admin.get("/_admin/stats").raise_for_status().json()
        return Counts(int(stats.get("requests", 0)), int(stats.get("rate_limited", 0)), 0)

    def totals(self) -> dict[str, int]:
        return {
            name: int(
                self.admin.get(f"/collections/{name}/items", params={"limit": 1})
                .raise_for_status()
                .json()["total"]
            )
            for name in self._references
        }


@contextlib.contextmanager
def fake_process(module: str, token: str) -> Iterator[str]:
    """``infrastructure.fakes.{module}`` under uvicorn in its own process, until the block ends."""
    port = free_port()
    code = FAKE.format(module=module, token=token, port=port)
    process = subprocess.Popen([sys.executable, "-c", code])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            try:
                httpx.get(f"{url}/_admin/faults", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the {module} fake did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


WEBFLOW_READ_ONLY = [
    "createdOn",
    "lastUpdated",
    "lastPublished",
    "isDraft",
    "isArchived",
    "cmsLocaleId",
]


class Webflow(Service):
    """The Webflow fake (Data API v2), written live (``/items/live``: no publish requests).

    Live rather than staged: staged writes would add a publish request per
    100 changed items after the run, live ones only a second request per
    delete batch (off the site, then out of the CMS).
    """

    name = "webflow"
    token = "bench-webflow-token-0123456789"
    site_id = "64f000000000000000000001"
    collections = {"authors": "64f0000000000000000000a1", "books": "64f0000000000000000000b1"}
    schemas: dict[str, Any] = {
        "authors": {
            "fields": [{"name": "favourite_book", "reference": True, "referenceTarget": "books"}],
            "readOnly": WEBFLOW_READ_ONLY,
        },
        "books": {
            "fields": [{"name": "author", "reference": True, "referenceTarget": "authors"}],
            "readOnly": WEBFLOW_READ_ONLY,
        },
    }

    def _process(self) -> contextlib.AbstractContextManager[str]:
        os.environ[TOKEN_VARIABLE] = self.token
        return fake_process("webflow", self.token)

    def connector(self, *, setup: bool) -> JsonObject:
        return {
            "type": "webflow",
            "base_url": f"{self.url}/v2",
            "site_id": self.site_id,
            "token": {"env": TOKEN_VARIABLE},
            "collections": dict(self.collections),
            "live": True,
            "requests_per_minute": SETUP_RATE if setup else self.rate.per_minute,
        }

    def seed(self, authors: int, books: int) -> None:
        self.limit(False)
        author_ids = [f"64f00000000000000a{a:06x}" for a in range(authors)]
        self._define(
            "authors",
            "Authors",
            [{"slug": "favourite_book", "type": "Reference", "validations": self._to("books")}],
            [
                {"id": author_ids[a], "fieldData": {"name": f"Author {a}", "slug": f"author-{a}"}}
                for a in range(authors)
            ],
        )
        book = [
            {
                "id": f"64f00000000000000b{b:06x}",
                "fieldData": {
                    "name": f"Book {b}",
                    "title": f"Book {b}",
                    "slug": f"book-{b}",
                    "author": author_ids[b % authors],
                },
            }
            for b in range(books)
        ]
        fields = [
            {"slug": "title", "type": "PlainText"},
            {"slug": "author", "type": "Reference", "validations": self._to("authors")},
        ]
        self._define("books", "Books", fields, book)

    def _to(self, folder: str) -> JsonObject:
        return {"collectionId": self.collections[folder]}

    def _define(self, folder: str, name: str, fields: list[Any], items: list[Any]) -> None:
        schema = {"displayName": name, "slug": folder, "fields": fields, "items": items}
        path = f"/_admin/collections/{self.collections[folder]}"
        self.admin.put(path, json=schema).raise_for_status()

    def book(self, i: int, author: str) -> JsonObject:
        return {"name": f"New book {i}", **super().book(i, author)}

    def limit(self, on: bool) -> None:
        faults = {"rate_limit": self.rate.requests, "rate_window_s": self.rate.window_s}
        self.admin.put(
            "/_admin/faults", json=faults if on else {"rate_limit": None}
        ).raise_for_status()

    def reset_stats(self) -> None:
        self.admin.delete("/_admin/stats").raise_for_status()

    def counts(self) -> Counts:
        stats = self.admin.get("/_admin/stats").raise_for_status().json()
        return Counts(
            int(stats.get("requests", 0)),
            int(stats.get("rate_limited", 0)),
            int(stats.get("duplicates", 0)),
        )

    def totals(self) -> dict[str, int]:
        headers = {"Authorization": f"Bearer {self.token}"}
        found = {}
        for folder, cid in self.collections.items():
            path = f"/v2/collections/{cid}/items"
            answer = self.admin.get(path, params={"limit": 1}, headers=headers)
            found[folder] = int(answer.raise_for_status().json()["pagination"]["total"])
        return found


class Airtable(Service):
    """The Airtable fake (Web API): link fields as arrays, inverse fields read-only.

    ``Books.author`` links to Authors (inverse ``Authors.books``) and
    ``Authors.favourite_book`` to Books (inverse ``Books.favourited_by``):
    Airtable fills the inverses itself, so each is in the linked folder's
    ``readOnly``. Creates are upserts on ``slug`` (the connector's default).
    """

    name = "airtable"
    token = "patBENCH0123456789.abcdef"
    base_id = "appBENCHBASE0001"
    tables = {"authors": "Authors", "books": "Books"}
    schemas: dict[str, Any] = {
        "authors": {
            "fields": [
                {
                    "name": "favourite_book",
                    "reference": True,
                    "referenceTarget": "books",
                    "multiple": True,
                }
            ],
            "readOnly": ["createdTime", "books"],
        },
        "books": {
            "fields": [
                {
                    "name": "author",
                    "reference": True,
                    "referenceTarget": "authors",
                    "multiple": True,
                }
            ],
            "readOnly": ["createdTime", "favourited_by"],
        },
    }

    def _process(self) -> contextlib.AbstractContextManager[str]:
        os.environ[TOKEN_VARIABLE] = self.token
        return fake_process("airtable", self.token)

    def connector(self, *, setup: bool) -> JsonObject:
        rate = SETUP_RATE if setup else self.rate.requests / self.rate.window_s
        return {
            "type": "airtable",
            "base_url": f"{self.url}/v0",
            "base_id": self.base_id,
            "token": {"env": TOKEN_VARIABLE},
            "tables": dict(self.tables),
            "requests_per_second": rate,
        }

    def seed(self, authors: int, books: int) -> None:
        self.limit(False)
        author_ids = [f"recA{a:013d}" for a in range(authors)]
        link = {"type": "multipleRecordLinks"}
        schema = {
            "base_id": self.base_id,
            "tables": {
                "Authors": {
                    "unique": "slug",
                    "fields": {
                        "slug": "singleLineText",
                        "name": "singleLineText",
                        "favourite_book": {
                            **link,
                            "linkedTable": "Books",
                            "inverse": "favourited_by",
                        },
                    },
                    "records": [
                        {
                            "id": author_ids[a],
                            "fields": {"name": f"Author {a}", "slug": f"author-{a}"},
                        }
                        for a in range(authors)
                    ],
                },
                "Books": {
                    "unique": "slug",
                    "fields": {
                        "slug": "singleLineText",
                        "title": "singleLineText",
                        "author": {**link, "linkedTable": "Authors", "inverse": "books"},
                    },
                    "records": [
                        {
                            "id": f"recB{b:013d}",
                            "fields": {
                                "title": f"Book {b}",
                                "slug": f"book-{b}",
                                "author": [author_ids[b % authors]],
                            },
                        }
                        for b in range(books)
                    ],
                },
            },
        }
        self.admin.put("/_admin/schema", json=schema).raise_for_status()

    def _pointer(self, path: str) -> JsonValue:
        return [f"@/{path}"]

    def limit(self, on: bool) -> None:
        faults = {"rate_limit": self.rate.requests, "rate_window_s": self.rate.window_s}
        self.admin.put(
            "/_admin/faults", json=faults if on else {"rate_limit": None}
        ).raise_for_status()

    def reset_stats(self) -> None:
        self.admin.delete("/_admin/stats").raise_for_status()

    def counts(self) -> Counts:
        stats = self.admin.get("/_admin/stats").raise_for_status().json()
        return Counts(
            int(stats.get("requests", 0)),
            int(stats.get("rate_limited", 0)),
            int(stats.get("duplicates", 0)),
        )

    def totals(self) -> dict[str, int]:
        return {
            folder: len(
                self.admin.get(f"/_admin/tables/{table}").raise_for_status().json()["records"]
            )
            for folder, table in self.tables.items()
        }


DEFAULT_RATES = {"sandbox": Rate(60, 60.0), "webflow": Rate(60, 60.0), "airtable": Rate(5, 1.0)}
"""Each service's documented limit (Webflow's lowest plan; Airtable's per base)."""
SERVICES: dict[str, type[Service]] = {"sandbox": Sandbox, "webflow": Webflow, "airtable": Airtable}


def service(name: str, requests_per_minute: float | None = None) -> Service:
    """The named service at its documented rate, or ``requests_per_minute`` (per-minute ones)."""
    rate = DEFAULT_RATES[name]
    if requests_per_minute is not None:
        if rate.window_s != 60.0:
            raise SystemExit(f"{name} limits requests per {rate.window_s:g} s, not per minute")
        rate = Rate(int(requests_per_minute), 60.0)
    return SERVICES[name](rate)
