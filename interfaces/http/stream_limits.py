"""What one stream client may cost the server: bounded chunks, a send timeout, a cap per token.

A client that opens a stream and never reads used to cost without bound: each
send handed the server a whole batch (up to thousands of events joined into one
``bytes``), the next batch waited behind it, and nothing ever gave up. Three
bounds make a greedy client cheap:

- frames go out in chunks of at most ``CHUNK_BYTES`` (one frame larger than that
  goes alone), so what a stalled client pins in the server's write buffer is a
  chunk, not a batch;
- a send that does not complete within ``send_timeout`` drops the client: its
  subscription and replay end at once and the connection is closed; it resumes
  with ``Last-Event-ID`` through the replay, which loses nothing;
- a token holds at most ``per_token`` open streams in a process; the next one
  is 429 ``rate_limited`` with ``Retry-After``, before anything is subscribed.

The live queue behind each subscription is bounded too (the feed's
``queue_size``): a client further behind than that is dropped the same way.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from infrastructure.postgres.tokens import Principal, token_hash
from interfaces.http.errors import error_response

log = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
"""The most one send carries (unless one frame is larger): what a stalled client pins."""
RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True)
class StreamLimits:
    send_timeout: float = 30.0
    """A client that takes no data for this long is dropped."""
    per_token: int = 100
    """Open streams one token may hold in one process."""


def chunked(frames: Iterable[bytes]) -> Iterator[bytes]:
    """The frames joined into pieces of at most ``CHUNK_BYTES`` (a larger frame alone)."""
    pending: list[bytes] = []
    size = 0
    for frame in frames:
        if pending and size + len(frame) > CHUNK_BYTES:
            yield b"".join(pending)
            pending, size = [], 0
        pending.append(frame)
        size += len(frame)
    if pending:
        yield b"".join(pending)


def stream_owner(request: Request, principal: Principal) -> Hashable:
    """Whose allowance a stream counts against: its bearer token, else its ticket's grant.

    A ticket does not name the token that made it, so ticket streams share
    one allowance per grant (workspace, scopes, admin). Only the token's hash
    is kept, as the token store keeps it.
    """
    header = request.headers.get("authorization")
    if header is not None:
        return ("token", token_hash(header.partition(" ")[2].strip()))
    return ("grant", principal)


class OpenStreams:
    """The streams open in this process, counted per owner."""

    def __init__(self, limits: StreamLimits) -> None:
        self.limits = limits
        self._open: dict[Hashable, int] = {}

    def count(self, owner: Hashable) -> int:
        return self._open.get(owner, 0)

    def guard(
        self, owner: Hashable, response: Response, body: AsyncGenerator[bytes, None]
    ) -> Response:
        """``response`` with the send timeout and a slot of ``owner``'s, or a 429."""
        if self.count(owner) >= self.limits.per_token:
            refused = error_response(
                "rate_limited",
                f"this token has {self.limits.per_token} streams open already; "
                "close one or retry later",
            )
            refused.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return refused
        self._open[owner] = self.count(owner) + 1
        return _Guarded(response, body, partial(self._release, owner), self.limits)

    def _release(self, owner: Hashable) -> None:
        left = self.count(owner) - 1
        if left > 0:
            self._open[owner] = left
        else:
            self._open.pop(owner, None)


class _ClientStalled(Exception):
    """A send did not complete in time: the client stopped reading."""


class _Guarded(Response):
    """Runs a streaming response with a deadline on every send, and frees its slot.

    The slot is freed and the body closed here rather than inside the body
    generator, because a response that is never iterated (the client left
    before the first event) would never run the generator's ``finally``.
    """

    def __init__(
        self,
        inner: Response,
        body: AsyncGenerator[bytes, None],
        release: Callable[[], None],
        limits: StreamLimits,
    ) -> None:
        super().__init__(status_code=inner.status_code)
        self._inner, self._body, self._release, self._limits = inner, body, release, limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stalled = False

        async def timed_send(message: Message) -> None:
            nonlocal stalled
            with anyio.move_on_after(self._limits.send_timeout) as waited:
                await send(message)
            if waited.cancelled_caught:
                stalled = True
                raise _ClientStalled

        try:
            await self._inner(scope, receive, timed_send)
        except Exception:
            if not stalled:
                raise
            log.info("a stream client took nothing for %s s: dropped", self._limits.send_timeout)
        finally:
            self._release()
            await self._body.aclose()  # the subscription ends now, not when collected
