"""Alpaca's wire formats (ALPACA.md): plain decimal strings, nanosecond timestamps, error bodies.

- Amounts are decimal strings in plain notation, never numbers, never exponents (§2).
- Order timestamps are RFC 3339 UTC with a nanosecond fraction, ``2019-11-20T06:49:45.214827487Z``
  [I6]; the clock speaks US/Eastern with its offset, ``2022-04-28T14:07:04.451420928-04:00``, and
  ``next_open``/``next_close`` without a fraction [D9][D10].
- Every error body is ``{"code": <8-digit int>, "message": ...}`` plus extra fields, except the
  gateway's 403 for missing keys, which is the literal ``{"message": "forbidden."}`` and a newline
  [I3], and the HTML pages a gateway can answer with [I23].
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

EASTERN = ZoneInfo("America/New_York")
NS_PER_S = 1_000_000_000

# Codes and messages from ALPACA.md §1, §4, §5, §7.
FORBIDDEN_BODY = '{"message": "forbidden."}\n'
UNAUTHORIZED = {"code": 40110000, "message": "request is not authorized"}
BAD_JSON = {"code": 40010000, "message": "request body format is invalid"}
DUPLICATE_ID = {"code": 40010001, "message": "client_order_id must be unique"}
ORDER_NOT_FOUND = {"code": 40410000, "message": "order not found"}
BAD_ORDER_ID = {"code": 40010001, "message": "order_id is missing"}
RATE_LIMITED = {"code": 42910000, "message": "rate limit exceeded"}  # body unverified [P1]
INTERNAL_ERROR = {"code": 50010000, "message": "internal server error occurred"}  # unverified


def _nginx_page(status: str) -> str:
    return (
        f"<html>\r\n<head><title>{status}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )


HTML_403 = _nginx_page("403 Forbidden")
HTML_502 = _nginx_page("502 Bad Gateway")


def error(code: int, message: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "message": message, **extra}


def invalid(field_message: str) -> dict[str, Any]:
    """422 body for a bad or missing request field: code 40010001, the message names the field."""
    return error(40010001, field_message)


def plain(value: Decimal) -> str:
    """``Decimal`` as Alpaca writes it: plain notation, no exponent, no trailing zeros."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def plain_or_none(value: Decimal | None) -> str | None:
    return None if value is None else plain(value)


def utc_ns(ns: int | None) -> str | None:
    """Epoch nanoseconds as ``YYYY-MM-DDTHH:MM:SS.fffffffffZ`` (order timestamps)."""
    if ns is None:
        return None
    seconds, fraction = divmod(ns, NS_PER_S)
    base = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{fraction:09d}Z"


def eastern_ns(ns: int) -> str:
    """Epoch nanoseconds in US/Eastern with offset and a nanosecond fraction (clock timestamp)."""
    seconds, fraction = divmod(ns, NS_PER_S)
    local = datetime.fromtimestamp(seconds, EASTERN)
    offset = local.strftime("%z")
    return f"{local.strftime('%Y-%m-%dT%H:%M:%S')}.{fraction:09d}{offset[:3]}:{offset[3:]}"


def eastern_seconds(moment: datetime) -> str:
    """A datetime in US/Eastern with offset, whole seconds (``next_open``, ``next_close``)."""
    return moment.astimezone(EASTERN).replace(microsecond=0).isoformat()


def datetime_ns(moment: datetime) -> int:
    """A timezone-aware datetime as epoch nanoseconds (naive ones are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * NS_PER_S + delta.microseconds * 1000


_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})?)?$"
)


def parse_time_ns(text: str) -> int | None:
    """RFC 3339 (nanosecond fraction allowed) or a plain date, as epoch ns; None if unreadable.

    A missing offset is read as UTC; a plain date is its UTC midnight.
    """
    match = _RFC3339.match(text.strip())
    if match is None:
        return None
    day, clock, fraction, zone = match.groups()
    try:
        moment = datetime.fromisoformat(f"{day}T{clock or '00:00:00'}")
    except ValueError:
        return None
    if zone in (None, "Z"):
        moment = moment.replace(tzinfo=UTC)
    else:
        sign = 1 if zone[0] == "+" else -1
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        moment = moment.replace(tzinfo=UTC) - sign * timedelta(hours=hours, minutes=minutes)
    return datetime_ns(moment) + int((fraction or "").ljust(9, "0") or 0)


def parse_qty(raw: object) -> Decimal | None:
    """A JSON ``qty`` (string or number, ALPACA.md §4) as a finite Decimal, or None."""
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        return None
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def decimals(value: Decimal) -> int:
    """Number of fraction digits a Decimal needs (``1.50`` needs 1)."""
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0
