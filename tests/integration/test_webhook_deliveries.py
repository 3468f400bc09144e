"""Webhook deliveries against a real receiver over HTTP, from a real publishd on PostgreSQL.

``hooked`` is a publishd whose delivery worker runs in the background with
short retry delays (the settings' ``webhook_retry_*``); ``quiet`` is one whose
background delivery worker never wakes after its start, so a test drives its
own ``DeliveryWorker`` with an injected clock and sees backoff, leases and the
24-hour give-up without waiting for them.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError

from application.webhook_delivery import DeliveryWorker
from domain.webhooks import RetrySchedule, new_secret
from infrastructure.postgres.database import Database
from infrastructure.settings import Settings
from infrastructure.webhooks.sender import HttpWebhookSender, SocketResolver
from interfaces.bootstrap import Runtime, build_http_app
from tests.api.api_support import Publishd, Sandbox, draft_url, library, serve_sandbox, write
from tests.support.servers import running_server
from tests.support.webhook_receiver import Receiver, webhook_receiver

pytestmark = pytest.mark.timeout(120)


@contextmanager
def publishd(database: Database, **settings: Any) -> Iterator[Publishd]:
    schema = f"wh_{uuid.uuid4().hex[:12]}"
    runtime = Runtime.build(
        Settings(
            database_url=database.conninfo,
            db_schema=schema,
            lease_seconds=5,
            rate_limit=100_000,
            rate_limit_burst=100_000,
            webhook_allow_private=True,  # the receiver is on 127.0.0.1
            **settings,
        )
    )
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


@pytest.fixture(scope="module")
def hooked(database: Database) -> Iterator[Publishd]:
    with publishd(
        database,
        webhook_retry_base_seconds=0.05,
        webhook_retry_max_seconds=0.2,
        webhook_poll_seconds=0.05,
    ) as served:
        yield served


@pytest.fixture(scope="module")
def quiet(database: Database) -> Iterator[Publishd]:
    with publishd(database, webhook_poll_seconds=3600) as served:
        yield served


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with serve_sandbox() as served:
        yield served


def register(api: Publishd, ws: str, receiver: Receiver, *events: str, **body: Any) -> Any:
    return api.ok(
        "POST",
        f"/workspaces/{ws}/webhooks",
        201,
        json={"url": receiver.url, "events": list(events), **body},
    )


def publish_one(api: Publishd, ws: str, name: str) -> dict[str, Any]:
    write(api, ws, f"authors/{name}.json", {"name": name.title(), "slug": name})
    status: dict[str, Any] = api.ok("POST", f"{draft_url(ws)}/publish?wait=true")
    assert status["state"] == "completed", status
    return status


def deliveries(api: Publishd, ws: str, webhook_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = api.ok(
        "GET", f"/workspaces/{ws}/webhooks/{webhook_id}/deliveries"
    )["deliveries"]
    return found


def settled(api: Publishd, ws: str, webhook_id: str, count: int) -> list[dict[str, Any]]:
    """The webhook's deliveries once ``count`` of them are no longer pending."""

    def done() -> list[dict[str, Any]] | None:
        found = deliveries(api, ws, webhook_id)
        finished = [d for d in found if d["state"] != "pending"]
        return found if len(finished) >= count else None

    found: list[dict[str, Any]] = api.wait_for("settled deliveries", done)
    return found


def test_a_signed_delivery_once_the_pipeline_has_ended(hooked: Publishd, sandbox: Sandbox) -> None:
    ws = library(hooked, sandbox)  # its pull completed before the webhook existed
    with webhook_receiver(publishd_url=hooked.base_url, token=hooked.admin_token) as receiver:
        hook = register(hooked, ws, receiver, "pipeline.completed", "pull.completed")
        assert hook["secret"].startswith("whsec_")
        status = publish_one(hooked, ws, "tolstoy")
        [got] = receiver.wait_for(1)

        payload = Verifier(hook["secret"]).verify(got.body, got.headers)
        with pytest.raises(WebhookVerificationError):
            Verifier(new_secret()).verify(got.body, got.headers)
        assert payload == {
            "id": got.headers["webhook-id"],
            "event": "pipeline.completed",
            "workspace": ws,
            "pipeline_id": status["pipeline_id"],
            "state": "completed",
            "counts": status["counts"],
            "occurred_at": payload["occurred_at"],
        }
        assert datetime.fromisoformat(payload["occurred_at"]) <= datetime.now(UTC)
        assert got.headers["publishd-event"] == "pipeline.completed"
        assert got.headers["content-type"] == "application/json"
        assert got.pipeline_state_seen == "completed"

        pulled = hooked.ok("POST", f"/workspaces/{ws}/pulls?wait=true")
        [_, second] = receiver.wait_for(2)
        assert Verifier(hook["secret"]).verify(second.body, second.headers) == {
            "id": second.headers["webhook-id"],
            "event": "pull.completed",
            "workspace": ws,
            "pull_id": pulled["pull_id"],
            "state": "completed",
            "counts": {k: pulled[k] for k in ("created", "updated", "unchanged", "deleted")},
            "occurred_at": second.payload["occurred_at"],
        }
        found = settled(hooked, ws, hook["id"], 2)
        assert [(d["event"], d["state"], d["attempts"], d["last_status"]) for d in found] == [
            ("pull.completed", "delivered", 1, 200),
            ("pipeline.completed", "delivered", 1, 200),
        ]
        # the pull before the registration got none, and nothing came twice
        assert len(receiver.received) == 2
    metrics = hooked.get("/metrics").text
    delivered = [
        line
        for line in metrics.splitlines()
        if line.startswith('publishd_webhook_deliveries_total{outcome="delivered"}')
    ]
    assert delivered and float(delivered[0].split()[-1]) >= 2, metrics


def test_a_receiver_answering_500_twice_gets_it_on_the_third_try(
    hooked: Publishd, sandbox: Sandbox
) -> None:
    ws = library(hooked, sandbox)
    secret = new_secret()
    with webhook_receiver(statuses=[500, 500]) as receiver:
        hook = register(hooked, ws, receiver, "pipeline.completed", secret=secret)
        assert hook["secret"] == secret
        publish_one(hooked, ws, "pushkin")
        tries = receiver.wait_for(3)
        assert [t.answered for t in tries] == [500, 500, 200]
        assert len({t.headers["webhook-id"] for t in tries}) == 1
        assert len({t.body for t in tries}) == 1
        for attempt in tries:
            Verifier(secret).verify(attempt.body, attempt.headers)
        [delivery] = settled(hooked, ws, hook["id"], 1)
        assert delivery["id"] == tries[0].headers["webhook-id"]
        assert (delivery["state"], delivery["attempts"], delivery["last_status"]) == (
            "delivered",
            3,
            200,
        )
        assert len(receiver.received) == 3


def test_only_the_events_asked_for_and_only_in_their_workspace(
    hooked: Publishd, sandbox: Sandbox
) -> None:
    ws = library(hooked, sandbox)
    with serve_sandbox() as elsewhere:
        other = library(hooked, elsewhere)
    with webhook_receiver() as receiver, webhook_receiver() as unasked:
        hook = register(hooked, ws, receiver, "pipeline.completed")
        register(hooked, ws, unasked, "pipeline.failed", "pull.failed")
        # another workspace's pull fails (its sandbox is gone): nothing for ws's webhooks
        assert hooked.ok("POST", f"/workspaces/{other}/pulls?wait=true")["state"] == "failed"
        status = publish_one(hooked, ws, "chekhov")
        [got] = receiver.wait_for(1)
        assert got.payload["pipeline_id"] == status["pipeline_id"]
        settled(hooked, ws, hook["id"], 1)
        assert unasked.received == [] and len(receiver.received) == 1


def test_no_secret_in_the_events_or_the_log(
    hooked: Publishd, sandbox: Sandbox, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ws = library(hooked, sandbox)
    with webhook_receiver(statuses=[503]) as receiver:
        hook = register(hooked, ws, receiver, "pipeline.completed")
        publish_one(hooked, ws, "bulgakov")
        receiver.wait_for(2)
        settled(hooked, ws, hook["id"], 1)
    secret, key = hook["secret"], hook["secret"].removeprefix("whsec_")
    listed = hooked.ok("GET", f"/workspaces/{ws}/webhooks")["webhooks"]
    assert [w["id"] for w in listed] == [hook["id"]] and "secret" not in listed[0]
    schema = hooked.runtime.settings.db_schema
    table = hooked.runtime.events_table
    with database.connect() as conn:
        leaks = conn.execute(
            f'SELECT count(*) FROM "{schema}"."{table}"'
            " WHERE position(%s::bytea IN state) > 0 OR position(%s::bytea IN state) > 0",
            (secret.encode(), key.encode()),
        ).fetchone()
    assert leaks == (0,)
    assert key not in caplog.text


def _clocked(api: Publishd, now: list[datetime], **options: Any) -> DeliveryWorker:
    def clock() -> datetime:
        return now[0]

    return DeliveryWorker(
        api.runtime.webhook_store,
        HttpWebhookSender(clock, timeout=5),
        SocketResolver(),
        clock=clock,
        schedule=RetrySchedule(),
        lease=timedelta(seconds=30),
        **{"allow_private": True, **options},
    )


async def _first_attempt(worker: DeliveryWorker) -> None:
    """Step until the delivery exists (it trails the status projections) and was tried."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while await worker.step() == 0:
        assert loop.time() < deadline, "no delivery was derived"
        await asyncio.sleep(0.02)


def test_backoff_doubles_and_gives_up_after_24_hours(quiet: Publishd, sandbox: Sandbox) -> None:
    ws = library(quiet, sandbox)
    now = [datetime.now(UTC)]
    outcomes: list[str] = []
    with webhook_receiver(then=500) as receiver:
        hook = register(quiet, ws, receiver, "pipeline.completed")
        publish_one(quiet, ws, "turgenev")
        worker = _clocked(quiet, now, on_outcome=outcomes.append)

        async def scenario() -> list[float]:
            delays = []
            await _first_attempt(worker)
            for _ in range(4):
                [pending] = deliveries(quiet, ws, hook["id"])
                due = datetime.fromisoformat(pending["next_attempt_at"])
                delays.append((due - now[0]).total_seconds())
                assert await worker.step() == 0  # not due yet
                now[0] = due
                assert await worker.step() == 1
            now[0] += timedelta(hours=25)
            assert await worker.step() == 1
            assert await worker.step() == 0
            await worker.sender.aclose()
            return delays

        delays = asyncio.run(scenario())
        for attempt, delay in enumerate(delays):
            assert 0.8 * 2**attempt <= delay <= 1.2 * 2**attempt, delays
        assert len(receiver.received) == 6
        assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    [failed] = deliveries(quiet, ws, hook["id"])
    assert (failed["state"], failed["attempts"], failed["last_status"]) == ("failed", 6, 500)
    assert failed["next_attempt_at"] is None
    assert outcomes == ["retried"] * 5 + ["failed"]


def test_a_dead_workers_delivery_is_taken_over_after_its_lease(
    quiet: Publishd, sandbox: Sandbox
) -> None:
    ws = library(quiet, sandbox)
    now = [datetime.now(UTC)]
    with webhook_receiver() as receiver:
        hook = register(quiet, ws, receiver, "pipeline.completed")
        publish_one(quiet, ws, "lermontov")
        store = quiet.runtime.webhook_store
        survivor = _clocked(quiet, now)

        def derived() -> bool:
            store.derive(now[0])
            return bool(deliveries(quiet, ws, hook["id"]))

        quiet.wait_for("the delivery", derived)
        [held] = store.claim(now[0], now[0] + timedelta(seconds=30), "dead", 10)

        async def scenario() -> tuple[int, int]:
            before = await survivor.step()
            now[0] += timedelta(seconds=31)
            after = await survivor.step()
            await survivor.sender.aclose()
            return before, after

        assert asyncio.run(scenario()) == (0, 1)
        [got] = receiver.wait_for(1)
        assert got.headers["webhook-id"] == held.id
    # the dead worker's late outcome is not recorded over the survivor's
    assert not store.record(
        held.id, "dead", state="failed", status=None, error="late", next_attempt_at=None
    )
    [delivery] = deliveries(quiet, ws, hook["id"])
    assert (delivery["state"], delivery["attempts"]) == ("delivered", 1)


def test_an_address_turned_private_is_refused_at_delivery(
    quiet: Publishd, sandbox: Sandbox
) -> None:
    ws = library(quiet, sandbox)
    now = [datetime.now(UTC)]
    outcomes: list[str] = []
    with webhook_receiver() as receiver:
        hook = register(quiet, ws, receiver, "pipeline.completed")
        publish_one(quiet, ws, "nabokov")
        guarded = _clocked(quiet, now, allow_private=False, on_outcome=outcomes.append)

        async def scenario() -> None:
            await _first_attempt(guarded)
            await guarded.sender.aclose()

        asyncio.run(scenario())
        assert receiver.received == []
    [refused] = deliveries(quiet, ws, hook["id"])
    assert (refused["state"], refused["attempts"], refused["last_status"]) == ("failed", 1, None)
    assert outcomes == ["refused"]
