"""One fake Alpaca order and its life (pure: no I/O, no clock of its own; times are passed in).

Life of an order (ALPACA.md §3): POST answers ``new`` while the market is open, ``accepted`` while
it is closed [D5][D9]; ``open_market`` routes accepted orders (``new``). Each fill step (the
server ticks every ``step_s``) moves a working order ``new → partially_filled … → filled`` over
``fill_steps`` steps, at the symbol's price of that step (``filled_avg_price`` is the weighted
mean; limit and stop prices are recorded, not enforced). A cancel or a day's close ends it as
``canceled`` / ``expired`` and keeps what filled.

A *plan* (``FakeAlpaca.script``) bends the life of the orders placed after it:

- ``fill``: the normal life above.
- ``partial_then_cancel`` / ``partial_then_expire``: the first step fills half (``floor(qty/2)``
  for a whole qty, ``qty/2`` truncated to 9 decimals for a fractional one), the next step ends it
  ``canceled`` / ``expired`` with that half filled.
- ``never_fill``: stays ``new`` (or ``accepted``) until a cancel or the close.
- ``reject_later``: POST answers 200 ``accepted``; the next step makes it ``rejected`` with nothing
  filled (a rejection can come after a 200 [I19]).
- ``replace``: the first step makes it ``replaced`` with ``replaced_by`` = a new order (own id,
  client id ``<cid>-r``, ``replaces`` = the old id) that fills normally.
- ``reject_now`` and ``insufficient_buying_power`` refuse the POST itself (see ``book``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any

from bot.devnet.fake_alpaca.wire import plain, plain_or_none, utc_ns

PLANS = frozenset(
    {
        "fill",
        "partial_then_cancel",
        "partial_then_expire",
        "never_fill",
        "reject_later",
        "reject_now",
        "insufficient_buying_power",
        "replace",
    }
)
TERMINAL = frozenset({"filled", "canceled", "expired", "rejected", "replaced"})
"""Statuses that ``status=closed`` lists and that a cancel refuses (``replaced`` included: it is
over for this order id, its successor carries on)."""

NINE_PLACES = Decimal("0.000000001")


@dataclass
class Order:
    id: str
    client_order_id: str
    symbol: str
    asset_id: str
    side: str
    qty: Decimal
    type: str
    time_in_force: str
    status: str
    created_ns: int
    submitted_ns: int
    position_intent: str
    plan: str = "fill"
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_price: Decimal | None = None
    trail_percent: Decimal | None = None
    extended_hours: bool = False
    filled_qty: Decimal = Decimal(0)
    filled_notional: Decimal = Decimal(0)
    updated_ns: int | None = None
    filled_ns: int | None = None
    expired_ns: int | None = None
    canceled_ns: int | None = None
    failed_ns: int | None = None
    replaced_ns: int | None = None
    replaced_by: str | None = None
    replaces: str | None = None
    steps_done: int = 0

    @property
    def open(self) -> bool:
        return self.status not in TERMINAL

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.filled_qty

    @property
    def signed_filled(self) -> Decimal:
        return self.filled_qty if self.side == "buy" else -self.filled_qty

    @property
    def filled_avg_price(self) -> Decimal | None:
        if self.filled_qty == 0:
            return None
        return self.filled_notional / self.filled_qty

    def fill(self, qty: Decimal, price: Decimal, now_ns: int) -> None:
        """Add an execution of ``qty`` at ``price`` (never beyond the order's qty)."""
        qty = min(qty, self.remaining)
        if qty <= 0:
            return
        self.filled_qty += qty
        self.filled_notional += qty * price
        self.updated_ns = now_ns
        if self.remaining == 0:
            self.status, self.filled_ns = "filled", now_ns
        else:
            self.status = "partially_filled"

    def end(self, status: str, now_ns: int) -> None:
        """End a working order as ``canceled``, ``expired`` or ``rejected`` (fills are kept)."""
        self.status, self.updated_ns = status, now_ns
        if status == "canceled":
            self.canceled_ns = now_ns
        elif status == "expired":
            self.expired_ns = now_ns
        elif status == "rejected":
            self.failed_ns = now_ns

    def to_wire(self) -> dict[str, Any]:
        """The Order object with every field of ALPACA.md §2 (amounts as strings)."""
        return {
            "id": self.id,
            "client_order_id": self.client_order_id,
            "created_at": utc_ns(self.created_ns),
            "updated_at": utc_ns(self.updated_ns or self.created_ns),
            "submitted_at": utc_ns(self.submitted_ns),
            "filled_at": utc_ns(self.filled_ns),
            "expired_at": utc_ns(self.expired_ns),
            "canceled_at": utc_ns(self.canceled_ns),
            "failed_at": utc_ns(self.failed_ns),
            "replaced_at": utc_ns(self.replaced_ns),
            "replaced_by": self.replaced_by,
            "replaces": self.replaces,
            "asset_id": self.asset_id,
            "symbol": self.symbol,
            "asset_class": "us_equity",
            "notional": None,
            "qty": plain(self.qty),
            "filled_qty": plain(self.filled_qty),
            "filled_avg_price": plain_or_none(self.filled_avg_price),
            "order_class": "simple",
            "order_type": self.type,
            "type": self.type,
            "side": self.side,
            "position_intent": self.position_intent,
            "time_in_force": self.time_in_force,
            "limit_price": plain_or_none(self.limit_price),
            "stop_price": plain_or_none(self.stop_price),
            "status": self.status,
            "extended_hours": self.extended_hours,
            "legs": None,
            "trail_percent": plain_or_none(self.trail_percent),
            "trail_price": plain_or_none(self.trail_price),
            "hwm": None,
        }


def half(qty: Decimal) -> Decimal:
    """What ``partial_then_*`` fills: ``floor(qty/2)`` if whole, else ``qty/2`` to 9 decimals."""
    if qty == qty.to_integral_value():
        return (qty / 2).to_integral_value(rounding=ROUND_DOWN)
    return (qty / 2).quantize(NINE_PLACES, rounding=ROUND_DOWN)


def step_target(qty: Decimal, step: int, steps: int) -> Decimal:
    """Cumulative filled qty after ``step`` of ``steps`` even steps (whole shares stay whole)."""
    if step >= steps:
        return qty
    share = qty * step / steps
    if qty == qty.to_integral_value():
        return share.to_integral_value(rounding=ROUND_DOWN)
    return share.quantize(NINE_PLACES, rounding=ROUND_DOWN)


@dataclass(frozen=True, slots=True)
class Replacement:
    """The successor an order asks for when its ``replace`` plan fires."""

    old: Order


def advance(order: Order, *, price: Decimal, fill_steps: int, now_ns: int) -> Replacement | None:
    """One fill step of a working order (the caller only calls it while the market is open,
    except for ``reject_later``, which fires regardless). Returns a request for a successor when
    a ``replace`` plan fires; the caller creates it and sets ``replaced_by``."""
    if not order.open or (order.status == "accepted" and order.plan != "reject_later"):
        return None
    order.steps_done += 1
    if order.plan == "reject_later":
        order.end("rejected", now_ns)
    elif order.plan == "never_fill":
        order.steps_done -= 1
    elif order.plan in ("partial_then_cancel", "partial_then_expire"):
        if order.steps_done == 1:
            order.fill(half(order.qty), price, now_ns)
        else:
            order.end("canceled" if order.plan == "partial_then_cancel" else "expired", now_ns)
    elif order.plan == "replace":
        order.status, order.replaced_ns, order.updated_ns = "replaced", now_ns, now_ns
        return Replacement(order)
    else:
        target = step_target(order.qty, order.steps_done, max(1, fill_steps))
        order.fill(target - order.filled_qty, price, now_ns)
    return None
