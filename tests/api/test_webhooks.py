"""API.md §13 over HTTP: registering, listing, deleting webhooks, their deliveries, refusals.

The session's publishd keeps the SSRF guard on (``PUBLISHD_WEBHOOK_ALLOW_PRIVATE``
unset), so a webhook registered here goes to a global address given as an IP
literal (nothing resolves names on a test machine, and nothing is sent: no
pipeline ends in these workspaces). Deliveries to a real receiver are in
``tests/integration/test_webhook_deliveries.py``.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from domain.webhooks import new_secret
from tests.api.api_support import Publishd, assert_error, new_workspace_id

pytestmark = pytest.mark.timeout(60)

PUBLIC = "http://93.184.215.14/hooks/publishd"
"""A global address (never contacted by these tests)."""


def workspace(api: Publishd) -> str:
    ws = new_workspace_id()
    connector = {"type": "sandbox", "base_url": "http://127.0.0.1:9/"}
    api.ok("POST", "/workspaces", 201, json={"id": ws, "connector": connector})
    return ws


def hooks(ws: str) -> str:
    return f"/workspaces/{ws}/webhooks"


def test_register_list_and_delete(api: Publishd) -> None:
    ws = workspace(api)
    token = api.token(ws, "read,write")
    made = api.ok(
        "POST",
        hooks(ws),
        201,
        token=token,
        json={"url": PUBLIC, "events": ["pipeline.completed", "pull.failed", "pipeline.completed"]},
    )
    assert made["url"] == PUBLIC
    assert made["events"] == ["pipeline.completed", "pull.failed"]
    assert made["secret"].startswith("whsec_")
    assert len(base64.b64decode(made["secret"].removeprefix("whsec_"))) >= 24
    given = new_secret()
    second = api.ok(
        "POST",
        hooks(ws),
        201,
        token=token,
        json={"url": PUBLIC, "events": ["pull.completed"], "secret": given},
    )
    assert second["secret"] == given and second["id"] != made["id"]

    listed = api.ok("GET", hooks(ws), token=token)["webhooks"]
    assert [(w["id"], w["url"], w["events"]) for w in listed] == [
        (made["id"], PUBLIC, ["pipeline.completed", "pull.failed"]),
        (second["id"], PUBLIC, ["pull.completed"]),
    ]
    assert all("secret" not in w and w["created_at"] for w in listed)
    assert made["secret"] not in api.get(hooks(ws), token=token).text
    assert api.ok("GET", f"{hooks(ws)}/{made['id']}/deliveries", token=token) == {"deliveries": []}

    api.ok("DELETE", f"{hooks(ws)}/{made['id']}", 204, token=token)
    assert [w["id"] for w in api.ok("GET", hooks(ws), token=token)["webhooks"]] == [second["id"]]
    assert_error(api.delete(f"{hooks(ws)}/{made['id']}", token=token), 404, "not_found")
    assert_error(api.get(f"{hooks(ws)}/{made['id']}/deliveries", token=token), 404, "not_found")
    assert_error(api.get(f"{hooks(ws)}/not-a-uuid/deliveries", token=token), 404, "not_found")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "https://10.1.2.3/hook",
        "http://172.16.0.9/",
        "http://192.168.1.1/x",
        "http://169.254.169.254/latest/meta-data",
        "http://0.0.0.0/",
        "http://[::1]:8000/",
        "http://[fe80::1]/",
        "http://[fd00::1]/",
        "http://[::ffff:127.0.0.1]/",
    ],
)
def test_private_addresses_are_refused(api: Publishd, url: str) -> None:
    ws = workspace(api)
    body = assert_error(
        api.post(hooks(ws), json={"url": url, "events": ["pipeline.completed"]}),
        422,
        "invalid_request",
    )
    assert "PUBLISHD_WEBHOOK_ALLOW_PRIVATE" in body["message"]
    assert api.ok("GET", hooks(ws)) == {"webhooks": []}


@pytest.mark.parametrize(
    "body",
    [
        {"url": PUBLIC, "events": ["pipeline.started"]},
        {"url": PUBLIC, "events": []},
        {"url": PUBLIC},
        {"events": ["pipeline.completed"]},
        {"url": "ftp://93.184.215.14/", "events": ["pipeline.completed"]},
        {"url": "http://user:pw@93.184.215.14/", "events": ["pipeline.completed"]},
        {"url": "not a url", "events": ["pipeline.completed"]},
        {"url": "http://unresolvable.invalid/", "events": ["pipeline.completed"]},
        {"url": PUBLIC, "events": ["pipeline.completed"], "secret": "s3cret"},
        {"url": PUBLIC, "events": ["pipeline.completed"], "secret": "whsec_!!not-base64!!"},
        {"url": PUBLIC, "events": ["pipeline.completed"], "secret": "whsec_c2hvcnQ="},
        {"url": PUBLIC, "events": ["pipeline.completed"], "extra": 1},
    ],
)
def test_invalid_registrations_are_422(api: Publishd, body: dict[str, Any]) -> None:
    ws = workspace(api)
    answer = assert_error(api.post(hooks(ws), json=body), 422, "invalid_request")
    secret = body.get("secret")
    assert secret is None or secret not in str(answer)


def test_tenancy_and_scopes(api: Publishd) -> None:
    mine, theirs = workspace(api), workspace(api)
    hook = api.ok("POST", hooks(theirs), 201, json={"url": PUBLIC, "events": ["pull.completed"]})
    foreign = api.token(mine, "read,write,publish")
    calls = [
        ("POST", hooks(theirs), {"json": {"url": PUBLIC, "events": ["pull.completed"]}}),
        ("GET", hooks(theirs), {}),
        ("DELETE", f"{hooks(theirs)}/{hook['id']}", {}),
        ("GET", f"{hooks(theirs)}/{hook['id']}/deliveries", {}),
    ]
    for method, path, extra in calls:
        assert_error(api.request(method, path, token=foreign, **extra), 404, "not_found")
    # their webhook through my workspace's path is as absent as any other
    assert_error(api.delete(f"{hooks(mine)}/{hook['id']}", token=foreign), 404, "not_found")
    assert_error(api.get(f"{hooks(mine)}/{hook['id']}/deliveries", token=foreign), 404, "not_found")
    reader = api.token(mine, "read")
    assert_error(
        api.post(hooks(mine), token=reader, json={"url": PUBLIC, "events": ["pull.completed"]}),
        403,
        "forbidden",
    )
    assert api.ok("GET", hooks(mine), token=reader) == {"webhooks": []}
    assert_error(api.get(hooks(mine), auth=False), 401, "unauthorized")
    assert [w["id"] for w in api.ok("GET", hooks(theirs))["webhooks"]] == [hook["id"]]


def test_an_absent_workspace_is_404(api: Publishd) -> None:
    ws = new_workspace_id()
    assert_error(
        api.post(hooks(ws), json={"url": PUBLIC, "events": ["pull.completed"]}), 404, "not_found"
    )
