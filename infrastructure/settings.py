"""All settings, from ``PUBLISHD_*`` environment variables, with local defaults."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PUBLISHD_", extra="ignore")

    database_url: str | None = None
    """A PostgreSQL URL. Unset: an embedded PostgreSQL in ``data_dir``."""
    data_dir: Path = Path(".publishd")
    db_schema: str = "publishd"
    pool_size: int = 8

    host: str = "127.0.0.1"
    port: int = 8000

    worker_concurrency: int = 32
    lease_seconds: float = 15.0
    max_request_bytes: int = 5 * 1024 * 1024
