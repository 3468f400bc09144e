"""What a log line is about: the request, trace, workspace and pipeline or pull in hand.

Context variables, so that whoever is handling a request or running a pipeline
binds them once and every log line written meanwhile (in this task, or in a
thread it hands work to: ``asyncio.to_thread`` copies the context) carries
them, without passing them down. The logging setup (``interfaces/logs.py``)
reads them into each record; nothing here knows how lines are written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
trace_id: ContextVar[str | None] = ContextVar("trace_id", default=None)
workspace: ContextVar[str | None] = ContextVar("workspace", default=None)
pipeline_id: ContextVar[str | None] = ContextVar("pipeline_id", default=None)
pull_id: ContextVar[str | None] = ContextVar("pull_id", default=None)

FIELDS: dict[str, ContextVar[str | None]] = {
    "request_id": request_id,
    "trace_id": trace_id,
    "workspace": workspace,
    "pipeline_id": pipeline_id,
    "pull_id": pull_id,
}


@contextlib.contextmanager
def bound(**values: str | None) -> Iterator[None]:
    """Bind ``values`` (names of ``FIELDS``) for the block; the earlier ones after it."""
    tokens = [(FIELDS[name], FIELDS[name].set(value)) for name, value in values.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current() -> dict[str, str]:
    """The bound fields, for a record or a response."""
    return {name: value for name, var in FIELDS.items() if (value := var.get()) is not None}
