"""The status page ``/`` (SPEC §10): a static HTML page and its script, no build step.

The script reads ``/api/status`` and ``/api/alerts`` every few seconds and fills the tables with
``textContent`` only (token symbols come from the chain: never HTML). Amounts are rounded for
people in the page (cents for prices, 4 decimals for shares) with exact string arithmetic; the
JSON stays exact. The answers forbid caching, framing and any script not served from here.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

STATIC = Path(__file__).resolve().parent / "static"
_FILES = {
    "/": ("index.html", "text/html"),
    "/static/page.js": ("page.js", "application/javascript"),
    "/static/page.css": ("page.css", "text/css"),
}
_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
        " img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def install_page(app: web.Application) -> None:
    for route, (name, content_type) in _FILES.items():
        app.router.add_get(route, _serve(name, content_type))


def _serve(name: str, content_type: str) -> Handler:
    body = (STATIC / name).read_bytes()  # read once: the files ship with the package

    async def serve(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type, charset="utf-8", headers=_HEADERS)

    return serve
