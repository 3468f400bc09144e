"""The kinds and outcomes a connector request is counted under: few, and never an id."""

from __future__ import annotations

import pytest

from infrastructure.connectors.retrying import outcome_of, request_kind


@pytest.mark.parametrize(
    ("method", "path", "params", "kind"),
    [
        ("GET", "/collections/c1/items", {"offset": 0, "limit": 100}, "list"),
        ("GET", "/appX/tbl1", {"pageSize": 100}, "list"),
        ("GET", "/collections/c1/items/abc123", None, "read"),
        ("POST", "/collections/c1/items/live", None, "create"),
        ("PATCH", "/collections/c1/items", None, "update"),
        ("DELETE", "/collections/c1/items", None, "delete"),
        ("POST", "/collections/c1/items/publish", None, "publish"),
    ],
)
def test_request_kinds(method: str, path: str, params: dict[str, int] | None, kind: str) -> None:
    assert request_kind(method, path, params) == kind


def test_outcomes() -> None:
    assert [outcome_of(s) for s in (200, 201, 404, 429, 503, None)] == [
        "2xx",
        "2xx",
        "4xx",
        "429",
        "5xx",
        "error",
    ]
