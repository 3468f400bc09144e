"""All settings, from ``PUBLISHD_*`` environment variables, with local defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PUBLISHD_", extra="ignore")

    database_url: str | None = None
    """A PostgreSQL URL. Unset: an embedded PostgreSQL in ``data_dir``."""
    data_dir: Path = Path(".publishd")
    db_schema: str = "publishd"
    pool_size: int = 8
    database_timeout_seconds: float = 5.0
    """Longest wait for a database connection; past it (or while the database is known to be
    down) a request is answered 503 ``unavailable``."""

    host: str = "127.0.0.1"
    port: int = 8000

    worker_concurrency: int = 32
    lease_seconds: float = 15.0
    max_request_bytes: int = 5 * 1024 * 1024

    stream_send_timeout_seconds: float = 30.0
    """A stream client that takes no data this long is dropped; it resumes with Last-Event-ID."""
    streams_per_token: int = 100
    """Open streams one token may hold in one process; the next is 429 ``rate_limited``."""
    stream_queue_events: int = 10_000
    """Live events a stream client may lag behind before it is dropped."""
    stream_page_bytes: int = 256 * 1024
    """What one page of a stream's replay aims to weigh (a client holds two at most)."""
    rate_limit: float = 50.0
    """Requests a second per token (``/healthz`` aside); over it 429 ``rate_limited``."""
    rate_limit_burst: int = 100
    """How many requests a token may send at once before ``rate_limit`` paces it."""

    conflict_retry_attempts: int = 30
    """Tries of a command whose aggregate other writers keep moving on, before 409 ``conflict``."""
    conflict_retry_seconds: float = 5.0
    """Time a command may spend on those tries (jittered backoff between them)."""
    header_timeout_seconds: float = 10.0
    """A connection must deliver a whole request head this soon after it opens (or goes idle)."""
    body_timeout_seconds: float = 30.0
    """Longest wait for the next piece of a request body before answering 408."""
    log_format: Literal["auto", "json", "text"] = "auto"
    """Log lines as JSON objects, readable text, or ``auto``: text on a terminal, else JSON."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    http_stack: Literal["httptools", "h11"] = "httptools"
    """uvicorn's HTTP parser: httptools (C) or h11 (pure Python); ``bench.sse`` compares them."""
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"
    """``auto``: uvloop where it is installed (a dependency on Linux and macOS), else asyncio."""
    keep_alive_seconds: float = 5.0
    """An idle keep-alive connection is closed after this long."""
    max_connections: int = 1000
    """Open connections beyond this are answered 503 and closed at once."""
    max_drain_bytes: int = 16 * 1024 * 1024
    """How much of an over-limit body is read and discarded so the client can read its 413."""

    webhook_allow_private: bool = False
    """Let webhooks reach loopback, private and link-local addresses (off: the SSRF guard)."""
    webhook_timeout_seconds: float = 10.0
    """A receiver that has not answered an attempt this soon is retried."""
    webhook_retry_base_seconds: float = 1.0
    """The first retry's delay; each later one doubles (with jitter) up to the maximum."""
    webhook_retry_max_seconds: float = 3600.0
    webhook_retry_window_seconds: float = 24 * 3600.0
    """How long a delivery is retried before it is ``failed``."""
    webhook_lease_seconds: float = 30.0
    """How long an attempt holds its delivery; a dead worker's is taken over after it."""
    webhook_poll_seconds: float = 0.5
    """How often a delivery worker looks for new terminal events and due deliveries."""
