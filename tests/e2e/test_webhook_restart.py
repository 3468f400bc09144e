"""``publishd serve`` SIGKILLed while a webhook delivery is failing; started again, it delivers.

The receiver answers 500 until the server is dead, then 200: the delivery's
state is in PostgreSQL, so the next server process takes it up (once the dead
one's lease ends) and sends it with the same ``webhook-id``. Neither server's
log nor the event store holds the webhook's secret.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from standardwebhooks import Webhook as Verifier

from infrastructure.postgres.database import Database
from interfaces.bootstrap import Runtime
from tests.api.api_support import Publishd, draft_url, library, serve_sandbox, write
from tests.support.serve_process import serve_process
from tests.support.webhook_receiver import webhook_receiver

pytestmark = pytest.mark.timeout(180)

ENV = {
    "PUBLISHD_WEBHOOK_ALLOW_PRIVATE": "true",
    "PUBLISHD_WEBHOOK_RETRY_BASE_SECONDS": "0.2",
    "PUBLISHD_WEBHOOK_RETRY_MAX_SECONDS": "0.5",
    "PUBLISHD_WEBHOOK_POLL_SECONDS": "0.1",
    "PUBLISHD_WEBHOOK_LEASE_SECONDS": "2",
    "PUBLISHD_RATE_LIMIT": "10000",
    "PUBLISHD_RATE_LIMIT_BURST": "10000",
}


def test_a_pending_delivery_survives_a_killed_server(
    database: Database, schema: str, runtime: Runtime, tmp_path: Path
) -> None:
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    with serve_sandbox() as sandbox, webhook_receiver(then=500) as receiver:
        with (
            serve_process(database, schema, runtime, first_dir, ENV) as server,
            httpx.Client(base_url=server.url, timeout=60) as http,
        ):
            api = Publishd(server.url, runtime, http, server.admin)
            ws = library(api, sandbox)
            hook = api.ok(
                "POST",
                f"/workspaces/{ws}/webhooks",
                201,
                json={"url": receiver.url, "events": ["pipeline.completed"]},
            )
            write(api, ws, "authors/tolstoy.json", {"name": "Tolstoy", "slug": "tolstoy"})
            status = api.ok("POST", f"{draft_url(ws)}/publish?wait=true")
            assert status["state"] == "completed"
            receiver.wait_for(2)  # failing, and retried
        # the server was SIGKILLed on leaving the block
        with receiver.changed:
            receiver.then = 200
            failed_before = len(receiver.received)
        assert all(r.answered == 500 for r in receiver.received)
        [pending] = runtime.webhook_store.deliveries(ws, hook["id"]) or []
        assert pending.state == "pending" and pending.attempts >= 1

        with (
            serve_process(database, schema, runtime, second_dir, ENV) as server,
            httpx.Client(base_url=server.url, timeout=60) as http,
        ):
            api = Publishd(server.url, runtime, http, server.admin)
            got = receiver.wait_for(failed_before + 1, timeout=60)
            assert got[-1].answered == 200
            payload = Verifier(hook["secret"]).verify(got[-1].body, got[-1].headers)
            assert payload["pipeline_id"] == status["pipeline_id"]
            assert {r.headers["webhook-id"] for r in got} == {pending.id}

            def delivered() -> dict[str, object] | None:
                [found] = api.ok("GET", f"/workspaces/{ws}/webhooks/{hook['id']}/deliveries")[
                    "deliveries"
                ]
                return found if found["state"] == "delivered" else None

            done = api.wait_for("the delivery recorded", delivered)
            assert done["attempts"] >= pending.attempts + 1

    key = hook["secret"].removeprefix("whsec_")
    for log in (first_dir / "serve.log", second_dir / "serve.log"):
        assert key not in log.read_text()
    with database.connect() as conn:
        leaks = conn.execute(
            f'SELECT count(*) FROM "{schema}"."{runtime.events_table}"'
            " WHERE position(%s::bytea IN state) > 0",
            (key.encode(),),
        ).fetchone()
    assert leaks == (0,)
