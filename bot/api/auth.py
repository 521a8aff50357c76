"""Who may ask what of the HTTP server (SPEC §10).

Rules:
- ``POST`` and ``DELETE`` change state: they need ``Authorization: Bearer <metrics.token>``.
  With no token configured they answer 403 (nobody may), with a missing or wrong one 401.
- With ``metrics.host`` off loopback every request needs the token (``/metrics`` and ``/health``
  too); without one configured every request answers 403 (``run`` refuses to start that way).
- Reads may also carry the token as the password of HTTP Basic auth, so that a person can open the
  page in a phone's browser (it asks once and resends it for the page's own fetches). Writes
  never accept Basic: a browser resends Basic credentials on any page's form post, a bearer
  header it never sends by itself (no cross-site request forgery).
- Tokens are compared in constant time and never appear in an answer or a log line.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from bot.api.replies import error_reply

WRITE_METHODS = frozenset({"POST", "DELETE", "PUT", "PATCH"})


def _presented(header: str, *, allow_basic: bool) -> str | None:
    """The token a request presents in its Authorization header (None: none presented)."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if allow_basic and scheme.lower() == "basic" and value.strip():
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2]
    return None


def auth_middleware(token: str, *, loopback: bool) -> Middleware:
    """The aiohttp middleware enforcing the rules above for one configured ``token``."""
    expected = token.encode("utf-8")

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        writes = request.method in WRITE_METHODS
        if loopback and not writes:
            return await handler(request)
        if not expected:
            return error_reply(
                403,
                None,
                "metrics.token is not set: this server accepts no "
                + ("changes" if loopback else "requests"),
            )
        presented = _presented(request.headers.get("Authorization", ""), allow_basic=not writes)
        if presented is None or not hmac.compare_digest(presented.encode("utf-8"), expected):
            reply = error_reply(
                401, None, "missing or wrong token: send Authorization: Bearer <metrics.token>"
            )
            if not writes:
                reply.headers["WWW-Authenticate"] = 'Basic realm="bot", charset="UTF-8"'
            return reply
        return await handler(request)

    return check
