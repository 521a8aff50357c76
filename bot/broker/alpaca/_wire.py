"""Alpaca's JSON wire format → the broker seam's types (pure: no network).

Rules:

- Bodies are parsed with ``parse_float=Decimal``: a JSON number never becomes a ``float``.
  Amounts are decimal strings on the wire (ALPACA.md §2); an exact JSON number (int or
  Decimal) is accepted too, a bool or anything else is not.
- Timestamps are RFC 3339 with an offset (``Z`` or ``-04:00``) and up to nanoseconds; they
  become aware datetimes truncated to microseconds (Python's resolution).
- Anything that does not fit (a missing field, an unknown status, a naive timestamp) is a
  :class:`WireError`: the client maps it to "unreadable answer", never to a crash.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from bot.broker.base import (
    AccountState,
    AssetInfo,
    BrokerPosition,
    MarketClock,
    OrderState,
    OrderStatus,
)
from bot.core.model import Direction
from bot.errors import BrokerWireError, NotionalOrder

WireError = BrokerWireError  # the names the client uses


_RFC3339 = re.compile(
    r"(?P<base>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})"
    r"(?:\.(?P<fraction>\d+))?"
    r"(?P<offset>Z|[+-]\d{2}:\d{2})",
    re.ASCII | re.IGNORECASE,
)


def loads(body: bytes) -> Any:
    """Parse a JSON body, decimals exact (floats are never created)."""
    try:
        return json.loads(body, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WireError(f"not JSON: {exc}") from None


def _field(obj: Any, key: str) -> Any:
    if not isinstance(obj, dict):
        raise WireError(f"expected a JSON object, got {type(obj).__name__}")
    if key not in obj:
        raise WireError(f"field {key!r} is missing")
    return obj[key]


def _text(obj: Any, key: str) -> str:
    value = _field(obj, key)
    if not isinstance(value, str) or not value:
        raise WireError(f"field {key!r} is not a non-empty string: {value!r}")
    return value


def _optional_text(obj: Any, key: str) -> str | None:
    value = obj.get(key) if isinstance(obj, dict) else None
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise WireError(f"field {key!r} is not a string: {value!r}")
    return value


def _flag(obj: Any, key: str) -> bool:
    value = _field(obj, key)
    if not isinstance(value, bool):
        raise WireError(f"field {key!r} is not a boolean: {value!r}")
    return value


def decimal_value(value: Any, what: str) -> Decimal:
    """An exact, finite decimal from a decimal string (or an exact JSON number)."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise WireError(f"{what} is not a decimal string: {value!r}")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise WireError(f"{what} is not a decimal string: {value!r}") from None
    if not number.is_finite():
        raise WireError(f"{what} is not finite: {value!r}")
    return number


def _decimal(obj: Any, key: str) -> Decimal:
    return decimal_value(_field(obj, key), f"field {key!r}")


def _optional_decimal(obj: Any, key: str) -> Decimal | None:
    value = obj.get(key) if isinstance(obj, dict) else None
    return None if value is None else decimal_value(value, f"field {key!r}")


def timestamp(value: Any, what: str = "timestamp") -> datetime:
    """RFC 3339 (nanoseconds allowed, offset required) → aware datetime, truncated to µs."""
    if not isinstance(value, str):
        raise WireError(f"{what} is not a string: {value!r}")
    match = _RFC3339.fullmatch(value.strip())
    if match is None:
        raise WireError(f"{what} is not an RFC 3339 timestamp with an offset: {value!r}")
    fraction = (match["fraction"] or "")[:6].ljust(6, "0")
    offset = "+00:00" if match["offset"].upper() == "Z" else match["offset"]
    try:
        return datetime.fromisoformat(f"{match['base']}.{fraction}{offset}")
    except ValueError:
        raise WireError(f"{what} is not a valid time: {value!r}") from None


def _optional_timestamp(obj: Any, key: str) -> datetime | None:
    value = obj.get(key) if isinstance(obj, dict) else None
    return None if value is None or value == "" else timestamp(value, f"field {key!r}")


def rfc3339(moment: datetime) -> str:
    """An aware datetime as Alpaca's query parameters take it (UTC, microseconds, ``Z``)."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no defined instant; pass an aware one")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def plain_decimal(qty: Decimal) -> str:
    """Plain notation, never an exponent: ``Decimal("1E+2")`` → ``"100"``, ``"1.50"`` → ``"1.5"``.

    (Not ``normalize()``: it rounds to the context's 28 digits.)
    """
    text = format(qty, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


_SIDES = {"buy": Direction.BUY, "sell": Direction.SELL}
_STATUSES = {status.value: status for status in OrderStatus}


def side_text(side: Direction) -> str:
    return side.value.lower()


def order_state(obj: Any) -> OrderState:
    """An Order object (ALPACA.md §2). ``submitted_at`` falls back to ``created_at``."""
    status_text = _text(obj, "status")
    status = _STATUSES.get(status_text)
    if status is None:
        raise WireError(f"unknown order status {status_text!r}")
    side_value = _text(obj, "side")
    side = _SIDES.get(side_value.lower())
    if side is None:
        raise WireError(f"unknown order side {side_value!r}")
    if _field(obj, "qty") is None:
        raise NotionalOrder(f"order {_text(obj, 'id')} has no qty (a notional order)")
    submitted_at = _optional_timestamp(obj, "submitted_at") or _optional_timestamp(
        obj, "created_at"
    )
    return OrderState(
        broker_order_id=_text(obj, "id"),
        client_order_id=_text(obj, "client_order_id"),
        symbol=_text(obj, "symbol"),
        side=side,
        qty=_decimal(obj, "qty"),
        status=status,
        filled_qty=_decimal(obj, "filled_qty"),
        filled_avg_price=_optional_decimal(obj, "filled_avg_price"),
        submitted_at=submitted_at,
        replaced_by=_optional_text(obj, "replaced_by"),
    )


def order_list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise WireError(f"expected a JSON list of orders, got {type(value).__name__}")
    return value


def market_clock(obj: Any) -> MarketClock:
    return MarketClock(
        timestamp=timestamp(_field(obj, "timestamp"), "field 'timestamp'"),
        is_open=_flag(obj, "is_open"),
        next_open=_optional_timestamp(obj, "next_open"),
        next_close=_optional_timestamp(obj, "next_close"),
    )


def account_state(obj: Any) -> AccountState:
    return AccountState(
        account_id=_text(obj, "id"),
        status=_text(obj, "status"),
        trading_blocked=_flag(obj, "trading_blocked"),
        account_blocked=_flag(obj, "account_blocked"),
        shorting_enabled=_flag(obj, "shorting_enabled"),
        buying_power=_decimal(obj, "buying_power"),
    )


def positions(value: Any) -> list[BrokerPosition]:
    """Signed by ``side``: the magnitude is taken from ``qty`` whichever sign it is sent with."""
    if not isinstance(value, list):
        raise WireError(f"expected a JSON list of positions, got {type(value).__name__}")
    result = []
    for obj in value:
        side = _text(obj, "side").lower()
        if side not in ("long", "short"):
            raise WireError(f"unknown position side {side!r}")
        magnitude = abs(_decimal(obj, "qty"))
        result.append(
            BrokerPosition(_text(obj, "symbol"), -magnitude if side == "short" else magnitude)
        )
    return result


def asset_info(obj: Any) -> AssetInfo:
    return AssetInfo(
        symbol=_text(obj, "symbol"),
        tradable=_flag(obj, "tradable"),
        fractionable=_flag(obj, "fractionable"),
        shortable=_flag(obj, "shortable"),
    )


def error_info(body: bytes) -> tuple[int | None, str]:
    """``(code, message)`` of an error answer; ``code`` is None unless the body is Alpaca JSON.

    Gateways answer ``{"message": "forbidden."}`` (no code) or an HTML page (ALPACA.md §7):
    the message is then a short, single-line excerpt of the body.
    """
    try:
        obj = loads(body)
    except WireError:
        obj = None
    if isinstance(obj, dict):
        code = obj.get("code")
        message = obj.get("message")
        has_code = isinstance(code, int) and not isinstance(code, bool)
        text = message if isinstance(message, str) else json.dumps(obj, default=str)
        return (code if has_code else None), _excerpt(text)
    return None, _excerpt(body.decode("utf-8", "replace"))


def _excerpt(text: str, limit: int = 200) -> str:
    flat = " ".join(re.sub(r"<[^>]*>", " ", text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
