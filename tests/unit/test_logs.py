"""The second lock on secrets: whatever a log line quotes, tokens and webhook secrets are cut."""

from __future__ import annotations

import io
import json
import logging

import pytest

from application import log_context
from interfaces.logs import REDACTED, Context, JsonLines, Redact, redact


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Bearer pd_abcdefghijklmnopqrstuvwxyz012345", "pd_abcdefghij"),
        ("GET /pipelines/x/events?ticket=pdt_QWERTYUIOPASDFGHJKLZXCVBNM&after=3", "pdt_QWERTY"),
        ("calling https://api.example.com?token=s3cr3t-value", "s3cr3t-value"),
        ("secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw rejected", "whsec_MfKQ"),
        ("a token pd_abcdefghijklmnopqrstuvwxyz012345 in prose", "pd_abcdefghij"),
    ],
)
def test_secrets_are_cut_out_of_a_line(text: str, secret: str) -> None:
    cleaned = redact(text)
    assert secret not in cleaned
    assert REDACTED in cleaned


def test_ordinary_text_is_left_alone() -> None:
    text = "GET /workspaces/acme/files/books/b1.json 200 1.2ms after=3"
    assert redact(text) == text


def test_a_json_line_carries_the_bound_ids_and_no_secret_from_its_arguments() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(Context())
    handler.addFilter(Redact())
    handler.setFormatter(JsonLines())
    logger = logging.getLogger("test.logs")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with log_context.bound(request_id="r-1", workspace="acme"):
            logger.warning("refused %s", "Bearer pd_abcdefghijklmnopqrstuvwxyz012345")
        logger.warning("outside")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["request_id"] == "r-1" and first["workspace"] == "acme"
    assert "pd_abc" not in first["message"] and first["level"] == "WARNING"
    assert "request_id" not in second and "pipeline_id" not in second
