"""413 for a body over the limit, as a whole response the client can read (API.md §9)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from interfaces.http.errors import ApiError, error_response


class BodyLimit:
    """ASGI middleware: refuse on ``Content-Length``, and again while the body streams in.

    A client may send no length or lie about it, so counting the bytes as they
    arrive is what actually bounds the memory a request can take.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._too_large(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        # Raised inside the handler's ``request.body()``: the app's error table answers it
        # (catching it out here would start a second response after the app's 500).
        await self.app(scope, limited, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response("payload_too_large", _TooLarge(self.max_bytes).message)
        await response(scope, receive, send)


class _TooLarge(ApiError):
    def __init__(self, max_bytes: int) -> None:
        super().__init__("payload_too_large", f"the request body is larger than {max_bytes} bytes")
