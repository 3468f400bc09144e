"""``publishd serve``: build the runtime, announce it, run uvicorn until SIGTERM/SIGINT."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType

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


class _Server(uvicorn.Server):
    """uvicorn, ending our endless streams as soon as a stop signal arrives.

    uvicorn waits for open connections before it runs the lifespan shutdown;
    SSE streams notice by themselves, NDJSON streams would hold it open.
    """

    def __init__(self, config: uvicorn.Config, runtime: Runtime) -> None:
        super().__init__(config)
        self._runtime = runtime

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        for feed in self._runtime.feeds:
            feed.end_streams()
        super().handle_exit(sig, frame)


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
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=10,
        )
        _Server(config, runtime).run()
    finally:
        runtime.close()
    return 0
