"""A publish and a pull through Webflow and Airtable as the README tells a user to do it.

``publishd serve`` in its own process with the token in its environment, the
service's local fake over HTTP, and the ``publishd`` command: ``connectors
check``, ``plan`` (the phase table with its calls) and ``publish --wait``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from infrastructure.fakes import airtable as airtable_fake
from infrastructure.fakes import webflow as webflow_fake
from infrastructure.postgres.database import Database
from interfaces.bootstrap import Runtime
from tests.integration.test_real_connectors_publish import (
    AIRTABLE_SCHEMAS,
    AIRTABLE_SEED,
    AT_BASE,
    AUTHORS,
    BOOKS,
    SCHEMAS,
    WEBFLOW_SEED,
)
from tests.support.serve_process import serve_process
from tests.support.servers import running_server

pytestmark = pytest.mark.timeout(120)

TOKEN_VAR = "PUBLISHD_E2E_SERVICE_TOKEN"


def webflow(url: str) -> dict[str, Any]:
    return {
        "type": "webflow",
        "base_url": f"{url}/v2",
        "site_id": "64f000000000000000000001",
        "token": {"env": TOKEN_VAR},
        "collections": {"authors": AUTHORS, "books": BOOKS},
        "live": False,
        "requests_per_minute": 120,
    }


def airtable(url: str) -> dict[str, Any]:
    return {
        "type": "airtable",
        "base_url": f"{url}/v0",
        "base_id": AT_BASE,
        "token": {"env": TOKEN_VAR},
        "tables": {"authors": "Authors", "books": "Books"},
    }


SERVICES: dict[str, tuple[Callable[[], Any], Callable[[str], dict[str, Any]], dict[str, Any]]] = {
    "webflow": (
        lambda: webflow_fake.create_app(WEBFLOW_SEED, token="wf-e2e-secret"),
        webflow,
        SCHEMAS,
    ),
    "airtable": (
        lambda: airtable_fake.create_app(AIRTABLE_SEED, token="pat-e2e-secret"),
        airtable,
        AIRTABLE_SCHEMAS,
    ),
}
TOKENS = {"webflow": "wf-e2e-secret", "airtable": "pat-e2e-secret"}


def publishd(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "interfaces.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_check_plan_publish_and_pull_from_the_command_line(
    service: str, database: Database, schema: str, runtime: Runtime, tmp_path: Path
) -> None:
    make_fake, config_of, schemas = SERVICES[service]
    secret = TOKENS[service]
    env = {TOKEN_VAR: secret}
    with (
        running_server(make_fake()) as fake_url,
        serve_process(database, schema, runtime, tmp_path, env) as server,
        httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {server.admin}"}, timeout=30
        ) as api,
    ):
        created = api.post("/workspaces", json={"id": "real", "connector": config_of(fake_url)})
        assert created.status_code == 201, created.text
        for folder, folder_schema in schemas.items():
            assert api.put(f"/workspaces/real/schemas/{folder}", json=folder_schema).is_success
        cli_env = os.environ | {
            "PUBLISHD_DATABASE_URL": database.conninfo,
            "PUBLISHD_DB_SCHEMA": schema,
            "PUBLISHD_URL": server.url,
            "PUBLISHD_TOKEN": server.admin,
            **env,
        }
        checked = publishd(cli_env, "connectors", "check", "real")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "authors ->" in checked.stdout and "books ->" in checked.stdout
        pulled = api.post("/workspaces/real/pulls?wait=true").json()
        assert pulled["state"] == "completed", pulled
        draft = "/workspaces/real/drafts/alice/files"
        new_author = {"name": "Woolf", "slug": "woolf"}
        book: dict[str, Any] = {"name": "Waves", "slug": "waves", "author": "@/authors/woolf.json"}
        if service == "airtable":  # fields by name; a link is always a list
            book = {"title": "Waves", "slug": "waves", "author": ["@/authors/woolf.json"]}
        assert api.put(f"{draft}/authors/woolf.json", json=new_author).is_success
        assert api.put(f"{draft}/books/waves.json", json=book).is_success

        planned = publishd(cli_env, "plan", "real", "alice")
        assert planned.returncode == 0, planned.stderr
        assert "create" in planned.stdout and "total" in planned.stdout
        published = publishd(cli_env, "publish", "real", "alice", "--yes", "--wait", "--json")
        assert published.returncode == 0, published.stderr
        final = json.loads(published.stdout)
        assert final["state"] == "completed", final["errors"]

        again = api.post("/workspaces/real/pulls?wait=true").json()
        assert again["state"] == "completed", again
        woolf = api.get("/workspaces/real/files/authors/woolf.json").json()
        waves = api.get("/workspaces/real/files/books/waves.json").json()
        expected = [woolf["id"]] if service == "airtable" else woolf["id"]
        assert waves["author"] == expected
        log = server.log.read_text()
        assert secret not in log
        assert secret not in api.get("/workspaces/real/events?follow=false").text
