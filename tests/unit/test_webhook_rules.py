"""The pure webhook rules: event names, payloads, secrets, the SSRF guard's addresses, backoff."""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime, timedelta

import pytest

from domain.webhooks import (
    InvalidWebhook,
    RetrySchedule,
    check_events,
    check_secret,
    check_url,
    delivery_id,
    new_secret,
    payload,
    refused_addresses,
    webhook_event,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "data", "event"),
    [
        ("PipelineCompleted", {"state": "completed"}, "pipeline.completed"),
        ("PipelineCompleted", {"state": "completed_with_errors"}, "pipeline.completed_with_errors"),
        ("PipelineFailed", {"error": "x"}, "pipeline.failed"),
        ("PipelineCancelled", {}, "pipeline.cancelled"),
        ("PullCompleted", {"counts": {}}, "pull.completed"),
        ("PullFailed", {"error": "x"}, "pull.failed"),
        ("PipelineStale", {}, None),
        ("EntryPublished", {}, None),
    ],
)
def test_terminal_events_name_webhook_events(name: str, data: dict[str, str], event: str) -> None:
    assert webhook_event(name, data) == event


def test_payload_names_its_subject_by_kind() -> None:
    body = payload("d", "pull.failed", "acme", "p1", {"created": 1}, "2026-01-01T00:00:00+00:00")
    assert body == {
        "id": "d",
        "event": "pull.failed",
        "workspace": "acme",
        "pull_id": "p1",
        "state": "failed",
        "counts": {"created": 1},
        "occurred_at": "2026-01-01T00:00:00+00:00",
    }
    assert "pipeline_id" in payload("d", "pipeline.cancelled", "acme", "x", {}, "t")


def test_delivery_ids_are_deterministic() -> None:
    assert delivery_id("w", 7) == delivery_id("w", 7)
    assert len({delivery_id("w", 7), delivery_id("w", 8), delivery_id("v", 7)}) == 3


def test_secrets() -> None:
    made = new_secret()
    assert check_secret(made) == made
    assert len(base64.b64decode(made.removeprefix("whsec_"))) == 32
    unpadded = "whsec_" + base64.b64encode(bytes(24)).decode().rstrip("=")
    assert check_secret(unpadded) == unpadded
    for bad in ("", "whsec_", "abc", "whsec_***", "whsec_" + base64.b64encode(bytes(8)).decode()):
        with pytest.raises(InvalidWebhook) as refused:
            check_secret(bad)
        assert bad[6:] == "" or bad[6:] not in refused.value.message


def test_events_are_checked_and_deduplicated() -> None:
    assert check_events(["pull.failed", "pull.failed", "pipeline.failed"]) == [
        "pull.failed",
        "pipeline.failed",
    ]
    for bad in ([], ["pipeline.started"]):
        with pytest.raises(InvalidWebhook):
            check_events(bad)


def test_urls() -> None:
    assert check_url("https://hooks.example.com/x?y=1") == ("hooks.example.com", 443)
    assert check_url("http://[2001:db8::1]:8080/") == ("2001:db8::1", 8080)
    for bad in ("ftp://x/", "http://", "http://u:p@x/", "http://x/ y", "http://x:99999/"):
        with pytest.raises(InvalidWebhook):
            check_url(bad)


def test_refused_addresses() -> None:
    private = [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.0.1",
        "169.254.169.254",
        "0.0.0.0",
        "::1",
        "fe80::1%eth0",
        "fd12::1",
        "::ffff:10.0.0.1",
        "224.0.0.1",
        "100.64.0.1",
    ]
    assert refused_addresses(private) == private
    assert refused_addresses(["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]) == []


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    schedule = RetrySchedule()
    rng = random.Random(7)
    for attempts in range(1, 30):
        delay = schedule.delay(attempts, rng).total_seconds()
        expected = min(2 ** (attempts - 1), 3600)
        assert 0.8 * expected <= delay <= min(1.2 * expected, 3600), (attempts, delay)


def test_a_delivery_is_tried_last_at_the_end_of_its_window_then_given_up() -> None:
    schedule = RetrySchedule()
    late = T0 + timedelta(hours=23, minutes=59, seconds=59)
    assert schedule.next_attempt(20, T0, late) == T0 + timedelta(hours=24)
    assert schedule.next_attempt(21, T0, T0 + timedelta(hours=24)) is None
    soon = schedule.next_attempt(1, T0, T0, random.Random(1))
    assert soon is not None and timedelta(seconds=0.8) <= soon - T0 <= timedelta(seconds=1.2)
