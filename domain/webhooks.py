"""Webhooks after publish (API.md §13): what is sent, when, and to which addresses.

Pure rules: which recorded terminal event becomes which webhook event, the
payload a receiver gets, the secret's form (Standard Webhooks' ``whsec_``
keys), the retry schedule, and which addresses a webhook may never reach. The
sending, signing and storing are the adapters'.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import random
import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from domain.errors import DomainError
from domain.json_types import JsonObject

WEBHOOK_EVENTS: tuple[str, ...] = (
    "pipeline.completed",
    "pipeline.completed_with_errors",
    "pipeline.failed",
    "pipeline.cancelled",
    "pull.completed",
    "pull.failed",
)
TERMINAL_EVENT_NAMES: frozenset[str] = frozenset(
    {"PipelineCompleted", "PipelineFailed", "PipelineCancelled", "PullCompleted", "PullFailed"}
)
"""The recorded events a webhook event is derived from (one webhook event each)."""

SECRET_PREFIX = "whsec_"
SECRET_BYTES = (24, 64)
"""The key lengths the Standard Webhooks specification allows."""
MAX_URL_LENGTH = 2048
NAMESPACE = uuid.UUID("3f0c62b4-5d1e-4c4b-9a57-2b1d6f0e9a11")


class InvalidWebhook(DomainError):
    """A registration no delivery could honour: bad URL, events or secret."""

    code = "invalid_request"


class RefusedAddress(DomainError):
    """The URL's host resolves to an address a webhook may not reach (SSRF guard)."""

    code = "invalid_request"


def webhook_event(name: str, data: JsonObject) -> str | None:
    """The webhook event of a recorded event, or None when it is not a terminal one."""
    if name == "PipelineCompleted":
        if data.get("state") == "completed_with_errors":
            return "pipeline.completed_with_errors"
        return "pipeline.completed"
    return {
        "PipelineFailed": "pipeline.failed",
        "PipelineCancelled": "pipeline.cancelled",
        "PullCompleted": "pull.completed",
        "PullFailed": "pull.failed",
    }.get(name)


def state_of(event: str) -> str:
    """``pipeline.completed_with_errors`` -> ``completed_with_errors``."""
    return event.partition(".")[2]


def delivery_id(webhook_id: str, notification_id: int) -> str:
    """Deterministic: deriving the same event for the same webhook twice names one delivery."""
    return str(uuid.uuid5(NAMESPACE, f"{webhook_id}:{notification_id}"))


def payload(
    delivery: str,
    event: str,
    workspace: str,
    subject_id: str,
    counts: JsonObject,
    occurred_at: str,
) -> JsonObject:
    """The JSON body of a delivery; ``subject_id`` is the pipeline's or the pull's id."""
    subject = "pull_id" if event.startswith("pull.") else "pipeline_id"
    return {
        "id": delivery,
        "event": event,
        "workspace": workspace,
        subject: subject_id,
        "state": state_of(event),
        "counts": counts,
        "occurred_at": occurred_at,
    }


# --- registration -----------------------------------------------------------------


def check_events(events: Sequence[str]) -> list[str]:
    """The events in their given order without repeats; unknown or none is refused."""
    unknown = [e for e in events if e not in WEBHOOK_EVENTS]
    if unknown:
        raise InvalidWebhook(
            f"unknown webhook events: {', '.join(unknown)}",
            {"unknown": unknown, "allowed": list(WEBHOOK_EVENTS)},
        )
    if not events:
        raise InvalidWebhook(
            "a webhook needs at least one event", {"allowed": list(WEBHOOK_EVENTS)}
        )
    return list(dict.fromkeys(events))


def check_secret(secret: str) -> str:
    """A ``whsec_<base64 key>`` of 24 to 64 bytes; the message never repeats the secret."""
    body = secret.removeprefix(SECRET_PREFIX)
    if body == secret:
        raise InvalidWebhook(f"a webhook secret must start with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidWebhook("a webhook secret must be whsec_ followed by base64") from None
    low, high = SECRET_BYTES
    if not low <= len(key) <= high:
        raise InvalidWebhook(f"a webhook secret's key must be {low} to {high} bytes")
    return secret


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def check_url(url: str) -> tuple[str, int]:
    """``http(s)://host[:port]/...`` with no credentials; its host and port."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidWebhook(f"a webhook URL may be at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidWebhook("the webhook URL is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidWebhook("a webhook URL must be http:// or https:// with a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidWebhook("a webhook URL may not carry credentials")
    if any(c.isspace() or not c.isprintable() for c in url):
        raise InvalidWebhook("a webhook URL may not hold spaces or control characters")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def refused_addresses(addresses: Iterable[str]) -> list[str]:
    """The addresses no webhook may reach: loopback, private, link-local, anything not global."""
    refused = []
    for text in addresses:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            refused.append(text)
            continue
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not address.is_global or address.is_multicast:
            refused.append(text)
    return refused


# --- retries ----------------------------------------------------------------------


@dataclass(frozen=True)
class RetrySchedule:
    """Exponential backoff: ``base``, then doubling with jitter, at most ``cap`` apart,
    until ``window`` after the delivery was due; then it has failed."""

    base: timedelta = timedelta(seconds=1)
    cap: timedelta = timedelta(hours=1)
    window: timedelta = timedelta(hours=24)
    jitter: float = 0.2
    """Each delay is scaled by a factor drawn from ``1 ± jitter``."""

    def delay(self, attempts: int, rng: random.Random | None = None) -> timedelta:
        """The wait after the ``attempts``-th failed attempt (1, 2, ...)."""
        draw = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        raw = self.base.total_seconds() * 2 ** min(max(attempts - 1, 0), 40) * draw
        return timedelta(seconds=min(raw, self.cap.total_seconds()))

    def next_attempt(
        self, attempts: int, due_since: datetime, now: datetime, rng: random.Random | None = None
    ) -> datetime | None:
        """When to try again after ``attempts`` failures, or None: give up (the window is over).

        The last try falls on the window's end, so a receiver down for a day
        still gets one attempt at its very end.
        """
        deadline = due_since + self.window
        if now >= deadline:
            return None
        return min(now + self.delay(attempts, rng), deadline)
