"""JSON answers of the HTTP API: bodies and the 4xx error shape (SPEC §10).

A 4xx body is ``{"error": {"field": "to", "message": "…"}}``; ``field`` is null when no single
field is at fault. Handlers ``raise refuse(…)``, so every route refuses in the same shape.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

_REFUSALS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    404: web.HTTPNotFound,
    409: web.HTTPConflict,
    415: web.HTTPUnsupportedMediaType,
    422: web.HTTPUnprocessableEntity,
    503: web.HTTPServiceUnavailable,
}


def json_reply(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")


def error_body(field: str | None, message: str) -> str:
    return json.dumps({"error": {"field": field, "message": message}})


def error_reply(status: int, field: str | None, message: str) -> web.Response:
    return web.Response(
        text=error_body(field, message), status=status, content_type="application/json"
    )


def refuse(status: int, field: str | None, message: str) -> web.HTTPException:
    """An exception for a handler to raise; aiohttp answers it with the error body."""
    return _REFUSALS[status](text=error_body(field, message), content_type="application/json")


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own refusals under ``/api/`` (no such route, wrong method) in the JSON shape."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        if not request.path.startswith("/api/"):
            raise
        reply = error_reply(exc.status, None, exc.reason)
        if "Allow" in exc.headers:
            reply.headers["Allow"] = exc.headers["Allow"]
        return reply
