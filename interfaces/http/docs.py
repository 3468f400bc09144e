"""``GET /docs``: the API reference, Swagger UI rendering ``/openapi.json``, all served from here.

Swagger UI's built files come from the ``openapi-ui-bundles`` package (the
files of swagger-ui-dist 5.17.14, byte for byte): no CDN and no Node toolchain.
The swagger-ui-bundle package (connexion's) stops at Swagger UI 4.15.5, which
refuses an OpenAPI 3.1 document ("Unable to render this definition").

Like ``/openapi.json`` the page needs no token: it shows the document, not
data; "Authorize" keeps a token in the page's memory only. Assets live under a
digest of their own bytes, so they are cached for a year and a new version is
a new address; the page itself is revalidated (ETag) and carries a CSP that
lets it load nothing but this server's files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from openapi_ui_bundles import swagger_ui
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from interfaces.http.errors import ApiError
from interfaces.http.registry import documented

_INITIALIZER = b"""\
window.addEventListener("load", () => {
  window.ui = SwaggerUIBundle({
    url: new URL("openapi.json", document.baseURI).href,
    dom_id: "#swagger-ui",
    deepLinking: true,
    docExpansion: "list",
    validatorUrl: null,
    persistAuthorization: false,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
"""
"""Swagger UI's settings. ``validatorUrl: null``: no badge fetched from swagger.io."""

_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'"
)
_IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class Asset:
    name: str
    media_type: str
    path: Path | None = None
    body: bytes = b""

    def read(self) -> bytes:
        return self.path.read_bytes() if self.path is not None else self.body


_VENDOR = Path(str(swagger_ui.static_path))
ASSETS = {
    a.name: a
    for a in (
        Asset("swagger-ui.css", "text/css; charset=utf-8", _VENDOR / "swagger-ui.css"),
        Asset(
            "swagger-ui-bundle.js",
            "text/javascript; charset=utf-8",
            _VENDOR / "swagger-ui-bundle.js",
        ),
        Asset("favicon-32x32.png", "image/png", _VENDOR / "favicon-32x32.png"),
        Asset("initializer.js", "text/javascript; charset=utf-8", body=_INITIALIZER),
    )
}


@cache
def _digest() -> str:
    """One digest over every asset: their address changes whenever one of them does."""
    h = hashlib.sha256()
    for name in sorted(ASSETS):
        h.update(name.encode() + b"\0" + ASSETS[name].read())
    return h.hexdigest()[:16]


@cache
def _page() -> tuple[bytes, str]:
    base = f"docs/{_digest()}"
    html = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>publishd API reference</title>
<link rel="icon" type="image/png" href="{base}/favicon-32x32.png">
<link rel="stylesheet" href="{base}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{base}/swagger-ui-bundle.js"></script>
<script src="{base}/initializer.js"></script>
</body>
</html>
""".encode()
    return html, f'"{hashlib.sha256(html).hexdigest()[:16]}"'


async def api_reference(request: Request) -> Response:
    """The page; relative addresses, so it works under a proxy's path prefix too."""
    body, etag = _page()
    headers = {
        "cache-control": "no-cache",
        "etag": etag,
        "content-security-policy": _CSP,
        "x-content-type-options": "nosniff",
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="text/html; charset=utf-8", headers=headers)


async def docs_asset(request: Request) -> Response:
    digest, name = request.path_params["digest"], request.path_params["name"]
    asset = ASSETS.get(name)
    if asset is None or digest != _digest():
        raise ApiError("not_found", f"no such file: /docs/{digest}/{name}")
    headers = {"cache-control": _IMMUTABLE, "x-content-type-options": "nosniff"}
    if asset.path is not None:
        return FileResponse(asset.path, media_type=asset.media_type, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


def docs_routes() -> list[Route]:
    return [
        Route("/docs", api_reference, methods=["GET"]),
        Route("/docs/{digest}/{name}", docs_asset, methods=["GET"]),
    ]


DOCUMENTED = documented(
    "GET",
    "/docs",
    "This API reference, rendered from /openapi.json",
    "api_reference",
    responses={200: None},
    auth=False,
    media_types=("text/html",),
)
"""The OpenAPI entry of ``/docs`` (its assets are the page's, not the API's)."""
