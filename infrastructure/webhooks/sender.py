"""Sending a delivery: signed as Standard Webhooks say, to the address that was checked.

The signature is made with the ``standardwebhooks`` library itself, so what a
receiver verifies with it (or with any of its ports) is what we signed:
``webhook-id`` (the delivery's id, the same on every attempt),
``webhook-timestamp`` (this attempt's unix seconds) and ``webhook-signature``
(``v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``).

The connection goes to the address the SSRF guard just approved, not to a
second lookup of the name (which could answer differently: DNS rebinding); the
URL's host still travels as ``Host`` and, for https, as the TLS server name,
so certificates are checked against it. Redirects are not followed, the
answer's body is not read, an attempt has ``timeout`` seconds in all, and no
proxy from the environment is used (it would reach what the guard refused).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from datetime import datetime

import httpx
from standardwebhooks import Webhook as Signer

from application.webhooks import AddressResolver, Clock, DueDelivery, SendResult, WebhookSender

USER_AGENT = "publishd-webhooks/1"


class SocketResolver(AddressResolver):
    def resolve(self, host: str, port: int) -> list[str]:
        try:
            return [str(ipaddress.ip_address(host.strip("[]")))]
        except ValueError:
            pass
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(str(info[4][0]) for info in found))


def signed_headers(delivery: DueDelivery, at: datetime) -> dict[str, str]:
    signature = Signer(delivery.secret).sign(delivery.id, at, delivery.body)
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": delivery.id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "publishd-event": delivery.event,
    }


class HttpWebhookSender(WebhookSender):
    def __init__(self, clock: Clock, *, timeout: float = 10.0) -> None:
        self.clock = clock
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                follow_redirects=False,
                trust_env=False,
                timeout=self.timeout,
                # No connection is reused: the pool keys connections by the address
                # connected to, and one kept for a host must not carry another host's
                # request (with that host's TLS name unchecked).
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=0),
            )
        return self._client

    async def send(self, delivery: DueDelivery, address: str) -> SendResult:
        url = httpx.URL(delivery.url)
        host = url.host
        headers = signed_headers(delivery, self.clock())
        headers["host"] = url.netloc.decode("ascii")
        extensions = {"sni_hostname": host} if url.scheme == "https" else {}
        request = self._http().build_request(
            "POST",
            url.copy_with(host=address),
            content=delivery.body.encode(),
            headers=headers,
            extensions=extensions,
        )
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._http().send(request, stream=True)
                await response.aclose()
        except TimeoutError:
            return SendResult(None, f"no answer within {self.timeout:g} s")
        except httpx.HTTPError as error:
            return SendResult(None, f"{type(error).__name__}: could not reach the receiver")
        return SendResult(response.status_code)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
