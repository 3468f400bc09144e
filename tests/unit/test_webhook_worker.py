"""The delivery worker's decisions, on in-memory fakes of its ports (no I/O)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from application.webhook_delivery import DeliveryWorker
from application.webhooks import (
    AddressResolver,
    Delivery,
    DueDelivery,
    SendResult,
    Webhook,
    WebhookSender,
    WebhookStore,
)
from domain.webhooks import RetrySchedule, new_secret

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class MemoryStore(WebhookStore):
    def __init__(self, *due: DueDelivery) -> None:
        self.due = list(due)
        self.records: list[dict[str, Any]] = []

    def register(self, webhook: Webhook, secret: str) -> None:
        raise NotImplementedError

    def webhooks(self, workspace: str) -> list[Webhook]:
        return []

    def delete(self, workspace: str, webhook_id: str) -> bool:
        return False

    def deliveries(self, workspace: str, webhook_id: str) -> list[Delivery] | None:
        return None

    def derive(self, now: datetime) -> int:
        return 0

    def claim(
        self, now: datetime, lease_until: datetime, owner: str, limit: int
    ) -> list[DueDelivery]:
        taken, self.due = self.due[:limit], self.due[limit:]
        return taken

    def record(self, delivery_id: str, owner: str, **outcome: Any) -> bool:
        self.records.append({"id": delivery_id, **outcome})
        return True


class Resolver(AddressResolver):
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers

    def resolve(self, host: str, port: int) -> list[str]:
        if host not in self.answers:
            raise OSError("no such host")
        return self.answers[host]


class Sender(WebhookSender):
    def __init__(self, *results: SendResult) -> None:
        self.results = list(results)
        self.sent: list[tuple[str, str]] = []

    async def send(self, delivery: DueDelivery, address: str) -> SendResult:
        self.sent.append((delivery.id, address))
        return self.results.pop(0)

    async def aclose(self) -> None:
        pass


def due(url: str, attempts: int = 0, since: datetime = T0) -> DueDelivery:
    return DueDelivery("d1", url, new_secret(), "pipeline.completed", "{}", attempts, since)


def run(store: MemoryStore, sender: Sender, now: datetime = T0, **kw: Any) -> list[str]:
    outcomes: list[str] = []
    worker = DeliveryWorker(
        store,
        sender,
        Resolver({"hooks.example": ["93.184.215.14"], "inside.example": ["10.0.0.7"]}),
        clock=lambda: now,
        schedule=RetrySchedule(jitter=0),
        lease=timedelta(seconds=30),
        on_outcome=outcomes.append,
        **kw,
    )
    asyncio.run(worker.step())
    return outcomes


def test_a_2xx_is_delivered_to_the_checked_address() -> None:
    store, sender = MemoryStore(due("https://hooks.example/x")), Sender(SendResult(204))
    assert run(store, sender) == ["delivered"]
    assert sender.sent == [("d1", "93.184.215.14")]
    assert store.records == [
        {"id": "d1", "state": "delivered", "status": 204, "error": None, "next_attempt_at": None}
    ]


def test_a_failure_is_retried_on_the_schedule() -> None:
    store = MemoryStore(due("https://hooks.example/x", attempts=2))
    assert run(store, Sender(SendResult(502))) == ["retried"]
    [record] = store.records
    assert (record["state"], record["status"]) == ("pending", 502)
    assert record["next_attempt_at"] == T0 + timedelta(seconds=4)  # the third failure: 1, 2, 4


def test_no_answer_after_the_window_fails_the_delivery() -> None:
    store = MemoryStore(due("https://hooks.example/x", attempts=30))
    late = T0 + timedelta(hours=24)
    assert run(store, Sender(SendResult(None, "no answer")), late) == ["failed"]
    assert store.records[0]["state"] == "failed" and store.records[0]["error"] == "no answer"


def test_a_host_now_private_is_refused_without_sending() -> None:
    store, sender = MemoryStore(due("https://inside.example/x")), Sender()
    assert run(store, sender) == ["refused"]
    assert sender.sent == [] and store.records[0]["state"] == "failed"
    allowed = MemoryStore(due("https://inside.example/x"))
    assert run(allowed, Sender(SendResult(200)), allow_private=True) == ["delivered"]


def test_a_host_that_no_longer_resolves_is_retried() -> None:
    store, sender = MemoryStore(due("https://gone.example/x")), Sender()
    assert run(store, sender) == ["retried"]
    assert sender.sent == [] and store.records[0]["state"] == "pending"
