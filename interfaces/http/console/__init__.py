"""The web console (API.md §14): static files that talk to the public HTTP API only.

``GET /`` is the page; its modules and styles are under ``/console/``. Nothing
here reads a token or the database: the page asks for a token, keeps it in
``sessionStorage``, and sends it as ``Authorization: Bearer`` like any client
(streams through ``POST /stream-tickets``, since ``EventSource`` sends no headers).
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"

_HEADERS = {
    # The page loads nothing from elsewhere and may only talk to publishd itself.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


async def console_page(_: Request) -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=_HEADERS)


def console_routes() -> list[BaseRoute]:
    """``GET /`` and ``/console/*``: apart from ``/docs``, ``/openapi.json`` and ``/metrics``."""
    return [
        Route("/", console_page, methods=["GET"]),
        Mount("/console", app=StaticFiles(directory=STATIC), name="console"),
    ]
