"""Many writers at once on one draft, one schema, one workspace: never a 500.

Each writer has its own keep-alive connection, as a busy team's clients
would; every answer is a success or a 409 ``conflict`` with a message.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.api.api_support import Publishd, draft_url, new_workspace_id
from tests.support.publishing import LIBRARY_SCHEMAS

WRITERS = 16
ROUNDS = 4


def _workspace(api: Publishd) -> str:
    ws = new_workspace_id()
    connector = {"type": "sandbox", "base_url": "http://127.0.0.1:9/"}
    api.ok("POST", "/workspaces", 201, json={"id": ws, "connector": connector})
    for folder, schema in LIBRARY_SCHEMAS.items():
        api.ok("PUT", f"/workspaces/{ws}/schemas/{folder}", json=schema)
    return ws


def _storm(api: Publishd, request: Callable[[httpx.Client, int, int], httpx.Response]) -> None:
    """Run ``WRITERS`` clients ``ROUNDS`` times each; every answer is 2xx or a 409 with a body."""
    headers = {"Authorization": f"Bearer {api.admin_token}"}

    def writer(n: int) -> list[tuple[int, str]]:
        with httpx.Client(base_url=api.base_url, headers=headers, timeout=30) as client:
            answers = [request(client, n, r) for r in range(ROUNDS)]
        return [(a.status_code, a.text) for a in answers]

    with ThreadPoolExecutor(WRITERS) as pool:
        answers = [a for batch in pool.map(writer, range(WRITERS)) for a in batch]
    bad = [a for a in answers if not (200 <= a[0] < 300 or a[0] == 409)]
    assert not bad, bad[:5]
    for status, text in answers:
        if status == 409:
            assert '"error":"conflict"' in text and '"message"' in text, text


def test_parallel_writers_to_one_draft_get_no_500(api: Publishd) -> None:
    ws = _workspace(api)
    url = draft_url(ws)

    def write(client: httpx.Client, n: int, r: int) -> httpx.Response:
        return client.put(f"{url}/files/books/b{n}-{r}.json", json={"title": f"{n}/{r}"})

    _storm(api, write)
    changes = api.ok("GET", f"{url}/changes")
    assert changes, changes


def test_parallel_schema_puts_get_no_500(api: Publishd) -> None:
    ws = _workspace(api)

    def put_schema(client: httpx.Client, n: int, r: int) -> httpx.Response:
        return client.put(f"/workspaces/{ws}/schemas/books", json=LIBRARY_SCHEMAS["books"])

    _storm(api, put_schema)


def test_discard_while_writing_gets_no_500(api: Publishd) -> None:
    ws = _workspace(api)
    url = draft_url(ws)

    def write_or_discard(client: httpx.Client, n: int, r: int) -> httpx.Response:
        if n % 2:
            return client.delete(url)
        return client.put(f"{url}/files/books/b{n}.json", json={"title": str(r)})

    _storm(api, write_or_discard)
