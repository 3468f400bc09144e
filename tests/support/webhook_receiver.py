"""A real webhook receiver for the tests: records every request, answers scripted statuses.

It runs under uvicorn on a free port (``running_server``). On each request it
may ask publishd about the pipeline the payload names (``GET /pipelines/{id}``)
and records the state it saw then, which shows whether a delivery could have
been sent before its pipeline's end was readable through the API.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.servers import running_server


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int
    pipeline_state_seen: str | None = None

    @property
    def payload(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.body)
        return found


@dataclass
class Receiver:
    url: str
    statuses: list[int] = field(default_factory=list)
    """Answers to give, in order; once used up, ``then`` for every request."""
    then: int = 200
    publishd_url: str | None = None
    """When set, each request's pipeline is looked up there (with ``token``) on receipt."""
    token: str | None = None
    received: list[Received] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        """Until ``count`` requests arrived (a condition with a deadline, never a sleep)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.received)} of {count} webhook requests came")
                self.changed.wait(left)
            return list(self.received)

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        with self.changed:
            answer = self.statuses.pop(0) if self.statuses else self.then
        seen = None
        if self.publishd_url is not None:
            pipeline_id = json.loads(body).get("pipeline_id")
            if pipeline_id:
                async with httpx.AsyncClient(base_url=self.publishd_url, timeout=30) as http:
                    status = await http.get(
                        f"/pipelines/{pipeline_id}",
                        headers={"Authorization": f"Bearer {self.token}"},
                    )
                seen = status.json().get("state")
        with self.changed:
            self.received.append(Received(dict(request.headers), body, answer, seen))
            self.changed.notify_all()
        return Response(b"", status_code=answer)


@contextmanager
def webhook_receiver(**options: Any) -> Iterator[Receiver]:
    holder: list[Receiver] = []

    async def hook(request: Request) -> Response:
        return await holder[0].handle(request)

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    with running_server(app) as url:
        receiver = Receiver(url + "/hook", **options)
        holder.append(receiver)
        yield receiver
