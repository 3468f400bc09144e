"""Delivery workers: derive the deliveries of committed terminal events, and send them.

Any number of workers, in any number of processes, deliver from one database:
each attempt is made under a lease taken in the store (``claim``), so two
workers never send the same delivery at once, and the deliveries of a worker
that died are taken over once their lease ends. The outcome is recorded only
by the lease's holder. Deliveries are at least once: a worker killed between
the receiver's answer and the record sends that delivery again, with the same
``webhook-id``, so the receiver can tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from application.webhooks import (
    AddressResolver,
    Clock,
    DueDelivery,
    SendResult,
    WebhookSender,
    WebhookStore,
    destination,
)
from domain.errors import DomainError
from domain.webhooks import RefusedAddress, RetrySchedule

log = logging.getLogger(__name__)

Outcome = Callable[[str], None]
"""Told each attempt's outcome: ``delivered``, ``retried``, ``failed`` or ``refused``."""


class DeliveryWorker:
    def __init__(
        self,
        store: WebhookStore,
        sender: WebhookSender,
        resolver: AddressResolver,
        *,
        clock: Clock,
        schedule: RetrySchedule,
        lease: timedelta,
        allow_private: bool = False,
        name: str | None = None,
        batch: int = 16,
        poll_interval: float = 0.5,
        on_outcome: Outcome | None = None,
    ) -> None:
        self.store = store
        self.sender = sender
        self.resolver = resolver
        self.clock = clock
        self.schedule = schedule
        self.lease = lease
        self.allow_private = allow_private
        self.name = name or f"webhooks-{uuid.uuid4().hex[:8]}"
        self.batch = batch
        self.poll_interval = poll_interval
        self.on_outcome = on_outcome or (lambda _: None)

    async def step(self) -> int:
        """Derive new deliveries, then attempt those due; how many attempts were made."""
        await asyncio.to_thread(self.store.derive, self.clock())
        now = self.clock()
        due = await asyncio.to_thread(
            self.store.claim, now, now + self.lease, self.name, self.batch
        )
        if due:
            await asyncio.gather(*(self.attempt(d) for d in due))
        return len(due)

    async def attempt(self, delivery: DueDelivery) -> str:
        """One attempt, and its record; the outcome."""
        host = urlsplit(delivery.url).hostname
        try:
            addresses = await asyncio.to_thread(
                destination, self.resolver, delivery.url, allow_private=self.allow_private
            )
        except RefusedAddress as refused:
            log.warning("webhook delivery %s refused: %s", delivery.id, refused.message)
            return await self._record(delivery, "failed", None, refused.message, None, "refused")
        except DomainError as problem:  # does not resolve (now): try again later
            result = SendResult(None, problem.message)
        else:
            result = await self.sender.send(delivery, addresses[0])
        if result.ok:
            return await self._record(delivery, "delivered", result.status, None, None, "delivered")
        attempts = delivery.attempts + 1
        next_at = self.schedule.next_attempt(attempts, delivery.due_since, self.clock())
        log.info(
            "webhook delivery %s to %s: attempt %d got %s",
            delivery.id,
            host,
            attempts,
            result.status if result.status is not None else result.error,
        )
        if next_at is None:
            return await self._record(
                delivery, "failed", result.status, result.error, None, "failed"
            )
        return await self._record(
            delivery, "pending", result.status, result.error, next_at, "retried"
        )

    async def _record(
        self,
        delivery: DueDelivery,
        state: str,
        status: int | None,
        error: str | None,
        next_at: datetime | None,
        outcome: str,
    ) -> str:
        kept = await asyncio.to_thread(
            self.store.record,
            delivery.id,
            self.name,
            state=state,
            status=status,
            error=error,
            next_attempt_at=next_at,
        )
        if kept:
            self.on_outcome(outcome)
        return outcome

    async def serve(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; a failing database is retried, never fatal."""
        failing = False
        while not stop.is_set():
            busy = 0
            try:
                busy = await self.step()
                failing = False
            except Exception:
                # once per outage, not once per poll
                if not failing:
                    log.exception("webhook worker %s could not deliver", self.name)
                failing = True
            if busy >= self.batch:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.poll_interval)
