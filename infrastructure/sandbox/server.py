"""``publishd sandbox serve``: the sandbox as a process, until SIGTERM/SIGINT.

uvicorn installs its own SIGTERM/SIGINT handlers when run on the main thread
and shuts down gracefully, so ``serve`` only has to build the app and block.

``--rate-limit`` reads ``N/s`` or ``N/min`` (a bare ``N`` is per second): the
two ways the services publishd talks to state their limits (Airtable per
second, Webflow per minute), so the sandbox can be set to either as written.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import uvicorn

from infrastructure.sandbox.app import create_app
from infrastructure.sandbox.faults import FaultConfig

_WINDOWS = {"s": 1.0, "min": 60.0}
"""The units ``--rate-limit`` takes, as window lengths in seconds."""


def parse_rate(value: float | str | None) -> tuple[float | None, float]:
    """``"50/s"``, ``"50"`` or ``50`` -> (50.0, 1.0); ``"60/min"`` -> (60.0, 60.0).

    The pair is (requests per window, window in seconds); None means no limit.
    """
    if value is None or isinstance(value, int | float):
        return (None if value is None else float(value)), 1.0
    text, slash, unit = value.strip().lower().partition("/")
    window = _WINDOWS.get(unit.strip()) if slash else 1.0
    wrong = f"rate limit {value!r} is not 'N/s' or 'N/min'"
    try:
        rate = float(text)
    except ValueError:
        raise ValueError(wrong) from None
    if window is None:
        raise ValueError(wrong)
    if not math.isfinite(rate) or rate <= 0:
        raise ValueError("rate limit must be a positive number")
    return rate, window


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
    limit, window_s = parse_rate(rate_limit)
    faults = FaultConfig(
        latency_ms=latency_ms,
        fail_rate=fail_rate,
        lost_response_rate=lost_response_rate,
        rate_limit_429_rate=rate_limit_429_rate,
        rate_limit=limit,
        rate_window_s=window_s,
        outage=outage,
        auth_token=auth_token,
        seed=fault_seed,
    )
    faults.validate()
    app = create_app(load_seed(seed_file), faults)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, ws="none")
