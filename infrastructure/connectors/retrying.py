"""The attempts of one logical call to a content service, shared by every connector.

Each service differs in its error bodies and in what its refusals mean; how a
call is tried is the same for all of them, and lives here:

- every attempt is paced by the shared ``RateLimiter`` of the credentials (if
  the service has a rate); a 429 pauses it for every caller (``Retry-After``,
  or the service's usual refusal time) and ``X-RateLimit-Remaining`` tells it
  what other clients spent;
- timeouts, dropped connections, 5xx and 429 are retried with exponential
  backoff and full jitter, never sooner than ``Retry-After``;
- a call whose every attempt found no service (connection refused, 503) while
  no other call of the connector succeeded is an outage: ``FatalConnectorError``
  (the run stops, resumable); any other spent budget is ``TransientFailure``;
- ``resend=False``: an attempt that may have been applied although no success
  came back is not sent again; ``MaybeApplied`` lets the caller look first
  (services without idempotency keys).

The adapter gets the final answer (a 2xx or a 4xx) and classifies it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from prometheus_client import Counter

from application.connector import FatalConnectorError, TransientFailure
from domain.json_types import JsonValue
from infrastructure.connectors.http_client import (
    ConnectError,
    HttpClient,
    InvalidAddress,
    Response,
    TransportError,
)
from infrastructure.connectors.rate_limit import RateLimiter, Sleep


class MaybeApplied(Exception):
    """No answer came back for a write that the service may have applied."""


class Attempt:
    """What one HTTP attempt came to: a response, or the transport error instead."""

    def __init__(self, response: Response | None, error: TransportError | None) -> None:
        self.response = response
        self.error = error

    @property
    def retryable(self) -> bool:
        return self.response is None or self.response.status == 429 or self.response.status >= 500

    @property
    def unavailable(self) -> bool:
        """No sign of a working service: the connection failed, or a 503."""
        if self.response is None:
            return isinstance(self.error, ConnectError)
        return self.response.status == 503

    @property
    def maybe_applied(self) -> bool:
        """Whether a write may have been applied although no success came back."""
        if self.response is None:
            return not isinstance(self.error, ConnectError)
        return self.response.status != 429


CONNECTOR_REQUESTS = Counter(
    "publishd_connector_requests",
    "HTTP requests sent by connectors, by connector, request kind and outcome",
    ["connector", "kind", "outcome"],
    registry=None,
)
"""Process-local (``/metrics`` registers it). ``outcome``: ``2xx``, ``4xx``, ``5xx``, ``429``,
or ``error`` (no answer: a timeout or a dropped connection)."""


def request_kind(method: str, path: str, params: Mapping[str, Any] | None) -> str:
    """What a request does, in the few words a dashboard groups by (never an id)."""
    if path.rstrip("/").endswith("/publish"):
        return "publish"
    if method == "GET":
        listing = params and any(key in params for key in ("offset", "pageSize", "limit"))
        return "list" if listing else "read"
    return {"POST": "create", "PATCH": "update", "PUT": "update", "DELETE": "delete"}.get(
        method, method.lower()
    )


def outcome_of(status: int | None) -> str:
    if status is None:
        return "error"
    return "429" if status == 429 else f"{status // 100}xx"


@dataclass
class Retrying:
    """How one connector tries its calls (see the module docstring)."""

    service: str
    """The service's name, for messages."""
    http: HttpClient | None
    unusable: str | None
    """Why no call can succeed (a bad config): every call answers it, fatal."""
    message_of: Callable[[Response], str]
    """The service's own error message in an answer."""
    limiter: RateLimiter | None = None
    max_retries: int = 5
    backoff_base: float = 0.1
    backoff_max: float = 10.0
    retry_after_max: float = 60.0
    pause_429: float = 1.0
    """How long a 429 without ``Retry-After`` pauses the limiter."""
    wait_429: float | None = None
    """Without a limiter, how long a retry waits after a 429 without ``Retry-After``."""
    scrub: Callable[[str], str] = field(default=lambda text: text)
    """Removes the credentials from a message, in case the service echoes them."""
    sleep: Sleep = asyncio.sleep
    jitter: Callable[[], float] = random.random
    successes: int = 0
    """Answered calls so far: a sign of life for the outage check."""

    async def call(
        self,
        method: str,
        path: str,
        body: JsonValue = None,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        resend: bool = True,
    ) -> Response:
        """Attempts until an answer is final (a 2xx or a 4xx but 429), which is returned."""
        successes_before = self.successes
        all_unavailable = True
        for attempt_no in range(self.max_retries + 1):
            attempt = await self._attempt(method, path, body, params, headers)
            if not attempt.retryable:
                self.successes += 1
                assert attempt.response is not None
                return attempt.response
            if not resend and attempt.maybe_applied:
                raise MaybeApplied(self.describe(attempt))
            all_unavailable = all_unavailable and attempt.unavailable
            if attempt_no < self.max_retries:
                await self.sleep(self.delay(attempt_no, attempt.response))
        message = self.scrub(
            f"{method} {path}: {self.describe(attempt)} after {self.max_retries + 1} attempts"
        )
        status = attempt.response.status if attempt.response is not None else None
        if all_unavailable and self.successes == successes_before:
            raise FatalConnectorError(f"{self.service} unavailable: {message}", status=status)
        raise TransientFailure(message, status=status)

    def describe(self, attempt: Attempt) -> str:
        if attempt.response is None:
            return f"{type(attempt.error).__name__}: {attempt.error}"
        return f"HTTP {attempt.response.status}: {self.message_of(attempt.response)}"

    async def _attempt(
        self,
        method: str,
        path: str,
        body: JsonValue,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
    ) -> Attempt:
        if self.http is None:
            raise FatalConnectorError(
                self.unusable or f"the {self.service} connector cannot be used"
            )
        try:
            async with self._paced():
                response = await self.http.request(
                    method, path, json=body, headers=headers, params=params
                )
        except TransportError as exc:
            self._count(method, path, params, None)
            return Attempt(None, exc)
        except InvalidAddress as exc:
            raise FatalConnectorError(
                f"the {self.service} connector cannot be used: {exc}"
            ) from exc
        self._count(method, path, params, response.status)
        self._learn(response)
        return Attempt(response, None)

    def _count(
        self, method: str, path: str, params: Mapping[str, Any] | None, status: int | None
    ) -> None:
        kind = request_kind(method, path, params)
        CONNECTOR_REQUESTS.labels(self.service.lower(), kind, outcome_of(status)).inc()

    def _paced(self) -> AbstractAsyncContextManager[None]:
        return self.limiter.request() if self.limiter is not None else nullcontext()

    def _learn(self, response: Response) -> None:
        """What the answer says about the quota, told to the shared limiter."""
        if self.limiter is None:
            return
        if response.status == 429:
            wait = retry_after(response)
            self.limiter.pause(self.pause_429 if wait is None else wait)
        remaining = response.headers.get("x-ratelimit-remaining")
        if remaining is not None and remaining.isdigit():
            self.limiter.observe_remaining(int(remaining))

    def delay(self, attempt_no: int, response: Response | None) -> float:
        """Full jitter over the exponential step, but never sooner than ``Retry-After``."""
        step = min(self.backoff_max, self.backoff_base * 2.0**attempt_no)
        delay = self.jitter() * step
        wait = retry_after(response)
        if wait is None and response is not None and response.status == 429:
            wait = self.wait_429 if self.limiter is None else None
        if wait is not None:
            delay = max(delay, min(wait, self.retry_after_max))
        return delay


def retry_after(response: Response | None) -> float | None:
    """Seconds from a ``Retry-After`` header: delay-seconds or an HTTP date."""
    raw = response.headers.get("retry-after") if response is not None else None
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def json_of(response: Response, service: str) -> JsonValue:
    """The answer's JSON (None for an empty answer); malformed JSON is a transient failure."""
    if response.status == 204 or not response.body:
        return None
    try:
        return response.json()
    except ValueError as exc:
        raise TransientFailure(f"non-JSON answer from {service}: {exc}") from exc


def details_of(response: Response) -> JsonValue:
    """An error answer's body: its JSON, else its text."""
    try:
        return response.json()
    except ValueError:
        return response.text or None


__all__ = ["Attempt", "MaybeApplied", "Retrying", "details_of", "json_of", "retry_after"]
