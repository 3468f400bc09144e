"""API.md §13: webhooks after publish — register, list, delete, and their deliveries.

The secret is in the 201 of the registration and nowhere else: not in the
list, not in an event, not in a log line.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from application.webhooks import Delivery, Webhook, Webhooks
from domain.webhooks import MAX_URL_LENGTH
from interfaces.http.errors import ApiError
from interfaces.http.models import RequestBody, ResponseBody
from interfaces.http.parsing import parse, path_param, reply, workspace_param
from interfaces.http.registry import Endpoint
from interfaces.http.services import Services

WebhookEvent = Literal[
    "pipeline.completed",
    "pipeline.completed_with_errors",
    "pipeline.failed",
    "pipeline.cancelled",
    "pull.completed",
    "pull.failed",
]


class RegisterWebhook(RequestBody):
    url: str = Field(max_length=MAX_URL_LENGTH, description="http(s) URL the deliveries go to")
    events: list[WebhookEvent] = Field(min_length=1, max_length=6)
    secret: str | None = Field(
        None, max_length=200, description="whsec_<base64 key>; generated when absent"
    )


class WebhookRegistered(ResponseBody):
    id: str
    url: str
    events: list[str]
    secret: str
    created_at: datetime


class WebhookBody(ResponseBody):
    id: str
    url: str
    events: list[str]
    created_at: datetime


class WebhookList(ResponseBody):
    webhooks: list[WebhookBody]


class DeliveryBody(ResponseBody):
    id: str
    event: str
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status: int | None
    next_attempt_at: datetime | None


class DeliveryList(ResponseBody):
    deliveries: list[DeliveryBody]


def _webhooks(s: Services) -> Webhooks:
    if s.webhooks is None:
        raise ApiError("unavailable", "webhooks are not served by this process")
    return s.webhooks


def _body(webhook: Webhook) -> WebhookBody:
    return WebhookBody(
        id=webhook.id, url=webhook.url, events=webhook.events, created_at=webhook.created_at
    )


def _delivery(d: Delivery) -> DeliveryBody:
    return DeliveryBody(
        id=d.id,
        event=d.event,
        state=d.state,  # type: ignore[arg-type]
        attempts=d.attempts,
        last_status=d.last_status,
        next_attempt_at=d.next_attempt_at,
    )


async def register_webhook(request: Request) -> Response:
    s = Services.of(request)
    ws = workspace_param(request)
    await s.guard(request, "write", ws)
    body = await parse(request, RegisterWebhook)
    hooks = _webhooks(s)
    webhook, secret = await run_in_threadpool(
        hooks.register, ws, body.url, list(body.events), body.secret
    )
    registered = WebhookRegistered(
        id=webhook.id,
        url=webhook.url,
        events=webhook.events,
        secret=secret,
        created_at=webhook.created_at,
    )
    return reply(registered, 201)


async def list_webhooks(request: Request) -> Response:
    s = Services.of(request)
    ws = workspace_param(request)
    await s.guard(request, "read", ws)
    found = await run_in_threadpool(_webhooks(s).webhooks, ws)
    return reply(WebhookList(webhooks=[_body(w) for w in found]))


async def delete_webhook(request: Request) -> Response:
    s = Services.of(request)
    ws = workspace_param(request)
    await s.guard(request, "write", ws)
    await run_in_threadpool(_webhooks(s).delete, ws, path_param(request, "webhook_id"))
    return Response(status_code=204)


async def list_deliveries(request: Request) -> Response:
    s = Services.of(request)
    ws = workspace_param(request)
    await s.guard(request, "read", ws)
    found = await run_in_threadpool(_webhooks(s).deliveries, ws, path_param(request, "webhook_id"))
    return reply(DeliveryList(deliveries=[_delivery(d) for d in found]))


HOOKS = "/workspaces/{ws}/webhooks"

ENDPOINTS = [
    Endpoint(
        "POST",
        HOOKS,
        register_webhook,
        "Register a webhook (its secret is shown only in this answer)",
        RegisterWebhook,
        {201: WebhookRegistered},
    ),
    Endpoint("GET", HOOKS, list_webhooks, "A workspace's webhooks", responses={200: WebhookList}),
    Endpoint(
        "DELETE",
        HOOKS + "/{webhook_id}",
        delete_webhook,
        "Remove a webhook and its deliveries",
        responses={204: None},
    ),
    Endpoint(
        "GET",
        HOOKS + "/{webhook_id}/deliveries",
        list_deliveries,
        "A webhook's deliveries, newest first",
        responses={200: DeliveryList},
    ),
]
