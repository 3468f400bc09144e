"""``publishd serve``: build the runtime, announce it, run uvicorn until SIGTERM/SIGINT."""

from __future__ import annotations

import signal
from pathlib import Path

import uvicorn

from infrastructure.settings import Settings
from interfaces.bootstrap import Runtime, build_http_app


def local_admin_token(runtime: Runtime) -> str:
    """The data directory's admin token, created on first use (embedded database only)."""
    path: Path = runtime.settings.data_dir / "admin-token"
    if path.exists():
        token = path.read_text().strip()
        if runtime.tokens.lookup(token) is not None:
            return token
    token = runtime.tokens.create_token(None, ["read", "write", "publish", "admin"], admin=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


def serve(settings: Settings, *, announce: bool = True) -> int:
    runtime = Runtime.build(settings)
    try:
        app = build_http_app(runtime)
        if announce:
            url = f"http://{settings.host}:{settings.port}"
            print(f"publishd listening on {url}", flush=True)
            if settings.database_url is None:
                token = local_admin_token(runtime)
                print(f"local admin token: {token}", flush=True)
                print(f"(also in {settings.data_dir / 'admin-token'})", flush=True)
        # uvicorn handles SIGTERM/SIGINT: it stops accepting, runs the lifespan
        # shutdown (streams closed, workers' in-flight entries recorded), then
        # re-raises the signal into the handler it found. Ours makes that a
        # normal return, so a stopped server exits 0.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=10,
        )
    finally:
        runtime.close()
    return 0
