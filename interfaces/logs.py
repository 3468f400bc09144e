"""How publishd writes its log lines: JSON lines for machines, readable text on a terminal.

``PUBLISHD_LOG_FORMAT`` picks ``json`` (one object a line: ``time``, ``level``,
``logger``, ``message``, and whichever of ``request_id``, ``trace_id``,
``workspace``, ``pipeline_id``, ``pull_id`` are bound — see
``application/log_context.py``), ``text``, or ``auto`` (text when stderr is a
terminal, else JSON). ``PUBLISHD_LOG_LEVEL`` sets the level (default INFO).

Every line passes ``Redact`` first: bearer tokens, publishd's own tokens and
stream tickets, and webhook secrets are cut out of the message and its
arguments, whoever logged them (a library's error message may quote a URL or
header). Secrets are not logged on purpose anywhere; this is the second lock.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from application import log_context

_SECRETS = re.compile(
    r"(?P<keep>Bearer\s+|ticket=|token=|secret=)[^\s&\"',;]+"
    r"|\bpdt?_[A-Za-z0-9_-]{20,}"
    r"|\bwhsec_[A-Za-z0-9+/=]+",
    re.IGNORECASE,
)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    return _SECRETS.sub(lambda m: (m.group("keep") or "") + REDACTED, text)


class Redact(logging.Filter):
    """Secrets out of the rendered message (and the exception text) before any handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(text)
        return True


class Context(logging.Filter):
    """The bound request, trace, workspace, pipeline and pull onto every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in log_context.FIELDS.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


class TextFormatter(logging.Formatter):
    """``12:00:01 INFO  publishd.access GET /healthz 200 0.4ms  request_id=… workspace=…``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        bound = [
            f"{name}={value}"
            for name in log_context.FIELDS
            if (value := getattr(record, name, None)) is not None
        ]
        return f"{line}  {' '.join(bound)}" if bound else line


class JsonLines(JsonFormatter):
    """One JSON object a line; unset context fields are left out, not written as null."""

    def __init__(self) -> None:
        super().__init__(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            datefmt="%Y-%m-%dT%H:%M:%S%z",
        )

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in log_data.items() if value is not None}


def configure(log_format: str = "auto", level: str = "INFO") -> None:
    """Send every logger's lines (uvicorn's too) through one handler on stderr."""
    if log_format == "auto":
        log_format = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(Context())
    handler.addFilter(Redact())
    handler.setFormatter(JsonLines() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # publishd writes its own access line (``interfaces/http/request_log.py``), with the ids
    logging.getLogger("uvicorn.access").disabled = True
