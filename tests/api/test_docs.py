"""``GET /docs``: an HTML page whose every asset publishd serves itself, without a token."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

from tests.api.api_support import Publishd, assert_error


class _References(HTMLParser):
    """Every address the page makes the browser load or follow."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in {"src", "href", "srcset", "action", "data", "poster"} and value:
                self.found.append((tag, value))


def _references(html: str) -> list[tuple[str, str]]:
    parser = _References()
    parser.feed(html)
    return parser.found


def test_docs_is_an_html_page_needing_no_token(api: Publishd) -> None:
    response = api.get("/docs", auth=False)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "<title>publishd API reference</title>" in response.text
    assert response.headers["cache-control"] == "no-cache"
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    again = api.get("/docs", auth=False, headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_every_asset_of_the_page_is_served_here(api: Publishd) -> None:
    page_url = f"{api.base_url}/docs"
    html = api.get("/docs", auth=False).text
    found = _references(html)
    tags = {tag for tag, _ in found}
    assert {"script", "link"} <= tags, found
    host = urlsplit(api.base_url).netloc
    bodies: dict[str, bytes] = {}
    for _, ref in found:
        url = urljoin(page_url, ref)
        assert urlsplit(url).scheme == "http" and urlsplit(url).netloc == host, ref
        response = api.http.get(url)
        assert response.status_code == 200, (ref, response.status_code)
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        bodies[urlsplit(url).path.rsplit("/", 1)[-1]] = response.content
    assert set(bodies) == {
        "favicon-32x32.png",
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "initializer.js",
    }
    assert b"SwaggerUIBundle" in bodies["swagger-ui-bundle.js"]
    assert len(bodies["swagger-ui-bundle.js"]) > 1_000_000  # the real build, not a stub
    assert b"openapi.json" in bodies["initializer.js"]
    assert b"validatorUrl: null" in bodies["initializer.js"]  # no badge from swagger.io
    assert api.get("/openapi.json", auth=False).status_code == 200  # what the page renders


def test_an_unknown_or_stale_asset_is_a_404(api: Publishd) -> None:
    html = api.get("/docs", auth=False).text
    script = next(ref for tag, ref in _references(html) if tag == "script")
    _, digest, name = script.split("/")
    assert_error(api.get(f"/docs/{digest}/index.html", auth=False), 404, "not_found")
    assert_error(api.get(f"/docs/{'0' * len(digest)}/{name}", auth=False), 404, "not_found")
    assert_error(api.get(f"/docs/{digest}/..%2Fdocs.py", auth=False), 404, "not_found")


def test_the_document_lists_the_reference_page(api: Publishd) -> None:
    document = api.get("/openapi.json", auth=False).json()
    operation = document["paths"]["/docs"]["get"]
    assert "security" not in operation
    assert "text/html" in operation["responses"]["200"]["content"]
