"""Webhooks: registering them, and the ports their deliveries go through.

Registrations hold a secret, so they live in a store of their own beside the
event store (like API tokens), never in an event. A delivery exists only once
its terminal event is committed: the store derives deliveries from the
committed events themselves (``derive``), exactly once per webhook and event.
``application.webhook_delivery`` sends them.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from domain.errors import NotFound
from domain.webhooks import (
    InvalidWebhook,
    RefusedAddress,
    check_events,
    check_secret,
    check_url,
    new_secret,
    refused_addresses,
)

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Webhook:
    """A registration as the API lists it: never its secret."""

    id: str
    workspace: str
    url: str
    events: list[str]
    created_at: datetime


@dataclass(frozen=True)
class Delivery:
    """One delivery as ``GET .../deliveries`` shows it."""

    id: str
    event: str
    state: str
    """``pending``, ``delivered`` or ``failed``."""
    attempts: int
    last_status: int | None
    next_attempt_at: datetime | None


@dataclass(frozen=True)
class DueDelivery:
    """A delivery a worker holds the lease of, with what it takes to send it."""

    id: str
    url: str
    secret: str
    event: str
    body: str
    """The exact JSON text that is signed and sent, the same on every attempt."""
    attempts: int
    due_since: datetime


@dataclass(frozen=True)
class SendResult:
    status: int | None
    """The receiver's HTTP status, or None when it did not answer (in time)."""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class WebhookStore(ABC):
    """Registrations and their deliveries (PostgreSQL: ``infrastructure.postgres.webhooks``)."""

    @abstractmethod
    def register(self, webhook: Webhook, secret: str) -> None:
        """Store a registration; it gets deliveries for terminal events committed from now on."""

    @abstractmethod
    def webhooks(self, workspace: str) -> list[Webhook]: ...

    @abstractmethod
    def delete(self, workspace: str, webhook_id: str) -> bool:
        """Remove a registration and its deliveries; False when the workspace has no such one."""

    @abstractmethod
    def deliveries(self, workspace: str, webhook_id: str) -> list[Delivery] | None:
        """The webhook's deliveries, newest first; None when the workspace has no such webhook."""

    @abstractmethod
    def derive(self, now: datetime) -> int:
        """Make the deliveries of terminal events committed since the last call, exactly once.

        The deliveries and the position they were derived up to commit together,
        and only events the status projections have already applied are taken,
        so a receiver that asks the API about the pipeline finds it ended.
        Returns how many deliveries were made.
        """

    @abstractmethod
    def claim(
        self, now: datetime, lease_until: datetime, owner: str, limit: int
    ) -> list[DueDelivery]:
        """Lease up to ``limit`` pending deliveries that are due and free (or whose lease ended)."""

    @abstractmethod
    def record(
        self,
        delivery_id: str,
        owner: str,
        *,
        state: str,
        status: int | None,
        error: str | None,
        next_attempt_at: datetime | None,
    ) -> bool:
        """An attempt's outcome, if ``owner`` still holds the lease; the lease ends."""


class AddressResolver(ABC):
    @abstractmethod
    def resolve(self, host: str, port: int) -> list[str]:
        """The IP addresses ``host`` stands for now; OSError when it does not resolve."""


class WebhookSender(ABC):
    @abstractmethod
    async def send(self, delivery: DueDelivery, address: str) -> SendResult:
        """POST the delivery, signed, connecting to ``address`` (checked) for the URL's host."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release connections."""


def destination(resolver: AddressResolver, url: str, *, allow_private: bool) -> list[str]:
    """The addresses to send to, or refused: a host that resolves to a non-global address.

    Checked at registration and again before every attempt, since what a name
    resolves to can change in between.
    """
    host, port = check_url(url)
    try:
        addresses = resolver.resolve(host, port)
    except OSError:
        raise InvalidWebhook(f"the webhook host {host!r} does not resolve") from None
    if not addresses:
        raise InvalidWebhook(f"the webhook host {host!r} does not resolve")
    refused = refused_addresses(addresses)
    if refused and not allow_private:
        raise RefusedAddress(
            f"the webhook host {host!r} resolves to a loopback, private or link-local address"
            " (PUBLISHD_WEBHOOK_ALLOW_PRIVATE=true allows it)",
            {"addresses": refused},
        )
    return addresses


class Webhooks:
    """The use cases of the webhook endpoints."""

    def __init__(
        self,
        store: WebhookStore,
        resolver: AddressResolver,
        *,
        workspace_exists: Callable[[str], bool],
        clock: Clock,
        allow_private: bool = False,
    ) -> None:
        self.store = store
        self.resolver = resolver
        self.workspace_exists = workspace_exists
        self.clock = clock
        self.allow_private = allow_private

    def register(
        self, workspace: str, url: str, events: Sequence[str], secret: str | None = None
    ) -> tuple[Webhook, str]:
        """The new registration and its secret (given, or generated): the only time it is shown."""
        if not self.workspace_exists(workspace):
            raise NotFound(f"workspace {workspace} does not exist")
        wanted = check_events(events)
        key = new_secret() if secret is None else check_secret(secret)
        destination(self.resolver, url, allow_private=self.allow_private)
        webhook = Webhook(str(uuid.uuid4()), workspace, url, wanted, self.clock())
        self.store.register(webhook, key)
        return webhook, key

    def webhooks(self, workspace: str) -> list[Webhook]:
        return self.store.webhooks(workspace)

    def delete(self, workspace: str, webhook_id: str) -> None:
        if not self.store.delete(workspace, webhook_id):
            raise NotFound(f"webhook {webhook_id} does not exist")

    def deliveries(self, workspace: str, webhook_id: str) -> list[Delivery]:
        found = self.store.deliveries(workspace, webhook_id)
        if found is None:
            raise NotFound(f"webhook {webhook_id} does not exist")
        return found
