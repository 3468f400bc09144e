"""Request bodies bounded in size and in time, refused with an answer the client can read.

A 413 sent while the client is still writing is lost to it: closing a socket
with unread data makes the kernel reset the connection, so a client that
writes its whole body first (urllib, http.client) sees a reset, not the 413.
The refused body is therefore read and discarded first, up to a bound.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from interfaces.http.errors import ApiError, error_response


@dataclass
class _Body:
    seen: int = 0
    complete: bool = False
    unfinished: bool = False
    """Unread body is left on the connection: the answer must close it."""


class BodyLimit:
    """ASGI middleware: refuse on ``Content-Length``, and again while the body streams in.

    A client may send no length or lie about it, so counting the bytes as they
    arrive is what actually bounds the memory a request can take; a client
    that declares a body and never sends it is answered 408 after
    ``read_timeout`` (uvicorn bounds only the wait for the next request).
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        *,
        drain_bytes: int = 16 * 1024 * 1024,
        read_timeout: float = 30.0,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.drain_bytes = drain_bytes
        self.read_timeout = read_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            # A client waiting for 100-continue sends nothing more: answer at once.
            drain = (
                declared.isdigit()
                and int(declared) <= self.drain_bytes
                and headers.get(b"expect", b"").lower() != b"100-continue"
            )
            drained = drain and await self._drain(receive, 0)
            response = error_response("payload_too_large", _TooLarge(self.max_bytes).message)
            if not drained:
                response.headers["connection"] = "close"
            await response(scope, receive, send)
            return
        body = _Body()

        async def guarded() -> Message:
            if body.complete:  # waits for a disconnect (streams) are not bounded here
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.read_timeout)
            except TimeoutError:
                body.unfinished = True
                raise _BodyTimeout(self.read_timeout) from None
            if message["type"] != "http.request":
                body.complete = True
                return message
            body.seen += len(message.get("body", b""))
            body.complete = not message.get("more_body", False)
            if body.seen > self.max_bytes:
                if not body.complete:
                    body.complete = await self._drain(receive, body.seen)
                body.unfinished = not body.complete
                raise _TooLarge(self.max_bytes)
            return message

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start" and body.unfinished:
                message = {**message, "headers": [*message["headers"], (b"connection", b"close")]}
            await send(message)

        # Raised inside the handler's ``request.body()``: the app's error table answers it
        # (catching it out here would start a second response after the app's 500).
        await self.app(scope, guarded, closing)

    async def _drain(self, receive: Receive, seen: int) -> bool:
        """Read and drop the rest of the body; True if it all came within the bounds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.read_timeout
        while seen <= self.drain_bytes:
            try:
                message = await asyncio.wait_for(receive(), deadline - loop.time())
            except TimeoutError:
                return False
            if message["type"] != "http.request":
                return False
            seen += len(message.get("body", b""))
            if not message.get("more_body", False):
                return True
        return False


class _TooLarge(ApiError):
    def __init__(self, max_bytes: int) -> None:
        super().__init__("payload_too_large", f"the request body is larger than {max_bytes} bytes")


class _BodyTimeout(ApiError):
    def __init__(self, seconds: float) -> None:
        super().__init__(
            "request_timeout", f"the request body did not arrive within {seconds:g} seconds"
        )
