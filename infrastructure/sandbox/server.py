"""``publishd sandbox serve``: the sandbox as a process, until SIGTERM/SIGINT.

uvicorn installs its own SIGTERM/SIGINT handlers when run on the main thread
and shuts down gracefully, so ``serve`` only has to build the app and block.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import uvicorn

from infrastructure.sandbox.app import create_app
from infrastructure.sandbox.faults import FaultConfig


def parse_rate(value: float | str | None) -> float | None:
    """``"50/s"``, ``"50"`` or ``50`` -> 50.0 requests/s; None means no limit."""
    if value is None or isinstance(value, int | float):
        return None if value is None else float(value)
    text = value.strip().lower().removesuffix("/s")
    try:
        rate = float(text)
    except ValueError:
        raise ValueError(f"rate limit {value!r} is not 'N/s'") from None
    if rate <= 0:
        raise ValueError("rate limit must be positive")
    return rate


def load_seed(seed_file: str | Path | None) -> dict[str, Any] | None:
    if seed_file is None:
        return None
    seed = json.loads(Path(seed_file).read_text(encoding="utf-8"))
    if not isinstance(seed, dict):
        raise ValueError(f"{seed_file}: a seed file holds a JSON object")
    return seed


def serve(
    host: str = "127.0.0.1",
    port: int = 8900,
    seed_file: str | Path | None = None,
    latency_ms: float = 0.0,
    fail_rate: float = 0.0,
    rate_limit: float | str | None = None,
    *,
    lost_response_rate: float = 0.0,
    rate_limit_429_rate: float = 0.0,
    outage: bool = False,
    auth_token: str | None = None,
    fault_seed: int | None = None,
    log_level: str = "warning",
) -> None:
    """Run the sandbox on ``host:port`` until SIGTERM/SIGINT. Bad options raise ``ValueError``."""
    faults = FaultConfig(
        latency_ms=latency_ms,
        fail_rate=fail_rate,
        lost_response_rate=lost_response_rate,
        rate_limit_429_rate=rate_limit_429_rate,
        rate_limit=parse_rate(rate_limit),
        outage=outage,
        auth_token=auth_token,
        seed=fault_seed,
    )
    faults.validate()
    app = create_app(load_seed(seed_file), faults)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, ws="none")
