"""Request parameters of the order endpoints: the POST body's fields and the list query (pure).

POST body (ALPACA.md §4 [D1]): ``symbol``, ``qty`` (string or number, > 0, at most 9 decimals),
``side`` buy/sell, ``type``, ``time_in_force``, prices the type needs, ``extended_hours`` (only
limit + day [D5]), ``client_order_id`` (at most 128 characters [D1]; a uuid when absent). A body
that is not a JSON object is 400 40010000 [I6]; a bad or missing field is 422 40010001 naming it.
``notional`` orders are not modelled (422). Both qty and notional: 400 [D6].

List query (§5 [D4]): ``status`` open (default)/closed/all, ``after``/``until`` (exclusive, on
``submitted_at``), ``limit`` (default 50, max 500), ``direction`` desc (default)/asc,
``symbols`` (comma-separated).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bot.devnet.fake_alpaca import wire
from bot.devnet.fake_alpaca.orders import TERMINAL, Order

TYPES = frozenset({"market", "limit", "stop", "stop_limit", "trailing_stop"})
TIME_IN_FORCE = frozenset({"day", "gtc", "opg", "cls", "ioc", "fok"})
_PRICES_NEEDED = {
    "limit": ("limit_price",),
    "stop": ("stop_price",),
    "stop_limit": ("limit_price", "stop_price"),
}
MAX_CLIENT_ID = 128


@dataclass(frozen=True, slots=True)
class PostedOrder:
    symbol: str
    qty: Decimal
    side: str
    cid: str | None  # None: the book gives the order a uuid
    fields: dict[str, Any]  # Order keyword fields: type, time_in_force, prices, extended_hours


def check_body(body: object) -> PostedOrder | tuple[int, dict[str, Any]]:
    """The POST body as a :class:`PostedOrder`, or the refusal ``(status, body)``."""
    if not isinstance(body, dict):
        return 400, dict(wire.BAD_JSON)
    symbol = body.get("symbol")
    if not isinstance(symbol, str) or not symbol.strip():
        return 422, wire.invalid("symbol is required")
    if body.get("qty") is not None and body.get("notional") is not None:
        return 400, wire.invalid("qty and notional are mutually exclusive")
    if body.get("notional") is not None:
        return 422, wire.invalid("notional orders are not supported by the fake")
    if body.get("qty") is None:
        return 422, wire.invalid("qty is required")
    qty = wire.parse_qty(body["qty"])
    if qty is None:
        return 422, wire.invalid("invalid qty")
    if qty <= 0:
        return 422, wire.invalid("qty must be > 0")
    if wire.decimals(qty) > 9:
        return 422, wire.invalid("qty must have at most 9 decimal places")
    side = body.get("side")
    if side is None:
        return 422, wire.invalid("side is required")
    if side not in ("buy", "sell"):
        return 422, wire.invalid("invalid side")
    fields: dict[str, Any] = {}
    for name, allowed in (("type", TYPES), ("time_in_force", TIME_IN_FORCE)):
        value = body.get(name)
        if value is None:
            return 422, wire.invalid(f"{name} is required")
        if value not in allowed:
            return 422, wire.invalid(f"invalid {name}")
        fields[name] = value
    for name in ("limit_price", "stop_price", "trail_price", "trail_percent"):
        if body.get(name) is not None:
            price = wire.parse_qty(body[name])
            if price is None or price <= 0:
                return 422, wire.invalid(f"invalid {name}")
            fields[name] = price
    for name in _PRICES_NEEDED.get(fields["type"], ()):
        if name not in fields:
            return 422, wire.invalid(f"{name} is required")
    if fields["type"] == "trailing_stop" and not {"trail_price", "trail_percent"} & set(fields):
        return 422, wire.invalid("trail_price or trail_percent is required")
    extended = body.get("extended_hours", False)
    if not isinstance(extended, bool):
        return 422, wire.invalid("invalid extended_hours")
    if extended and (fields["type"] != "limit" or fields["time_in_force"] != "day"):
        return 422, wire.invalid("extended hours order must be DAY limit orders")
    fields["extended_hours"] = extended
    cid = body.get("client_order_id")
    if cid is not None and not isinstance(cid, str):
        return 422, wire.invalid("invalid client_order_id")
    if cid and len(cid) > MAX_CLIENT_ID:
        return 422, wire.invalid("client_order_id must be no more than 128 characters")
    return PostedOrder(symbol.strip().upper(), qty, side, cid or None, fields)


def list_orders(orders: Sequence[Order], query: dict[str, str]) -> tuple[int, Any]:
    """``GET /v2/orders``: the filtered, sorted, limited list, or a 422 naming the parameter."""
    status = query.get("status", "open")
    if status not in ("open", "closed", "all"):
        return 422, wire.invalid("invalid status")
    bounds: dict[str, int | None] = {}
    for name in ("after", "until"):
        raw = query.get(name)
        bounds[name] = None if raw is None else wire.parse_time_ns(raw)
        if raw is not None and bounds[name] is None:
            return 422, wire.invalid(f"invalid {name}")
    try:
        limit = int(query.get("limit", "50"))
    except ValueError:
        return 422, wire.invalid("invalid limit")
    if not 1 <= limit <= 500:
        return 422, wire.invalid("limit must be between 1 and 500")
    direction = query.get("direction", "desc")
    if direction not in ("asc", "desc"):
        return 422, wire.invalid("invalid direction")
    symbols = {s.strip().upper() for s in query.get("symbols", "").split(",") if s.strip()}
    after, until = bounds["after"], bounds["until"]
    chosen = [
        o
        for o in orders
        if (status == "all" or (status == "closed") == (o.status in TERMINAL))
        and (after is None or o.submitted_ns > after)
        and (until is None or o.submitted_ns < until)
        and (not symbols or o.symbol in symbols)
    ]
    chosen.sort(key=lambda o: o.submitted_ns, reverse=direction == "desc")
    return 200, [o.to_wire() for o in chosen[:limit]]
