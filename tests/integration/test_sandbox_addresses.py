"""Connector addresses (issue 13, defect 6): a path prefix is honoured, and an address no
request can reach ends the run ``failed`` with the reason instead of crashing every lease."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from infrastructure.connectors.sandbox import SandboxConnector
from infrastructure.postgres.database import Database
from infrastructure.sandbox.app import create_app
from tests.support.publishing import Harness, harness
from tests.support.servers import running_server

pytestmark = pytest.mark.timeout(60)

SEED = {
    "collections": {
        "site1/menus": {"items": [{"id": "m1", "fieldData": {"slug": "main"}}]},
    }
}


@pytest.mark.parametrize("prefix", ["/cms/api", "/cms/api/"])
def test_a_base_url_with_a_path_sends_under_it(prefix: str) -> None:
    behind_a_proxy = Starlette(routes=[Mount("/cms/api", create_app(SEED))])

    async def go(url: str) -> list[str]:
        connector = SandboxConnector(url + prefix, max_retries=0)
        try:
            page = await connector.list_page("site1/menus", 0, 10)
            created = await connector.create("site1/menus", {"slug": "side"}, "key-1")
            found = await connector.read("site1/menus", created.id)
            assert found is not None and found.field_data["slug"] == "side"
            return [record.id for record in page.records]
        finally:
            await connector.aclose()

    with running_server(behind_a_proxy) as url:
        assert asyncio.run(go(url)) == ["m1"]


@pytest.fixture
def lib(database: Database, schema: str) -> Iterator[Harness]:
    with harness(database, schema) as h:
        yield h


@pytest.mark.parametrize("address", ["127.0.0.1:{port}", "http://", "ftp://127.0.0.1:{port}/"])
def test_a_run_against_an_address_no_request_can_reach_fails_with_the_reason(
    lib: Harness, address: str
) -> None:
    lib.setup_library()
    port = lib.sandbox_url.rsplit(":", 1)[1]
    # As a stream recorded before configs were checked holds it: the API refuses it now.
    lib.app.change_connector(
        lib.workspace, {"type": "sandbox", "base_url": address.format(port=port)}
    )
    old = lib.main("books/old-man.json")
    assert old is not None
    lib.write("books/old-man.json", {**old, "title": "Revised"})

    pipeline = lib.plan_and_run()

    assert pipeline.state == "failed", pipeline.state
    assert pipeline.error is not None and "cannot be used" in pipeline.error
    assert lib.app.workspace(lib.workspace).publishing is None
    assert lib.item_by("books", "slug", "old-man")["fieldData"]["title"] == "Old Man"
