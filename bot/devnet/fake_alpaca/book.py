"""The fake account's state and the rules of its endpoints (pure: no I/O; time comes from ``now``).

Every method answers a :data:`Reply`, ``(HTTP status, JSON body or None)``, with the bodies of
ALPACA.md. The checks of ``POST /v2/orders`` run in this order (Alpaca does not document one,
§1.4; this fake picks the nastier reading, so a retry of an order that landed can be refused by
buying power or available qty *before* the uniqueness check is reached):

1. account blocked (403 40310000), 2. body fields (422 40010001 naming the field), 3. asset
unknown / not tradable (422 42210000), 4. fractional rules, 5. sell beyond the available long
qty, 6. buying power, 7. ``client_order_id must be unique`` (422, forever [I1][T1]).

A refused POST creates nothing [T1]. Money: ``cash = buying_power base + Σ sells - Σ buys``
(filled notional), reported ``buying_power = cash - open buys' remaining cost`` (open buys hold
buying power until they fill or are canceled [D5]).
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bot.devnet.fake_alpaca import wire
from bot.devnet.fake_alpaca.orders import TERMINAL, Order, advance, half
from bot.devnet.fake_alpaca.params import check_body, list_orders

Reply = tuple[int, Any]
DEFAULT_PRICE = Decimal(100)
_MARKET_DAY = {"type": "market", "time_in_force": "day"}
_SYMBOL = re.compile(r"^[A-Z][A-Z0-9.]{0,11}$")


@dataclass
class Asset:
    tradable: bool = True
    fractionable: bool = True
    shortable: bool = True
    known: bool = True


@dataclass
class Position:
    qty: Decimal = Decimal(0)
    avg_entry: Decimal = Decimal(0)

    def apply(self, signed: Decimal, price: Decimal) -> None:
        """Add a signed execution: growing averages the entry, shrinking keeps it, crossing
        zero starts a new entry at ``price``."""
        new = self.qty + signed
        if self.qty == 0 or (self.qty > 0) == (signed > 0):
            self.avg_entry = (abs(self.qty) * self.avg_entry + abs(signed) * price) / abs(new)
        elif new != 0 and (new > 0) != (self.qty > 0):
            self.avg_entry = price
        self.qty = new


@dataclass
class AccountFlags:
    trading_blocked: bool = False
    account_blocked: bool = False
    shorting_enabled: bool = True
    buying_power_base: Decimal = Decimal(1_000_000)


@dataclass
class Book:
    """All state of one fake account. ``now`` gives epoch nanoseconds (injected for purity)."""

    now: Callable[[], int]
    account_id: str = "fake-account-0001"
    fill_steps: int = 1
    lookup_lag_ns: int = 0
    seed: int = 0
    is_open: bool = True
    flags: AccountFlags = field(default_factory=AccountFlags)
    prices: dict[str, Decimal] = field(default_factory=dict)
    assets: dict[str, Asset] = field(default_factory=dict)
    positions: dict[str, Position] = field(default_factory=dict)
    plans: dict[str, str] = field(default_factory=dict)
    order_list: list[Order] = field(default_factory=list)
    by_cid: dict[str, Order] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._ids = random.Random(self.seed + 1)  # ids apart from the fault dice (seeded too)

    # ----- helpers -----
    def new_uuid(self) -> str:
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    def price(self, symbol: str) -> Decimal:
        return self.prices.get(symbol, DEFAULT_PRICE)

    def asset(self, symbol: str) -> Asset:
        if not _SYMBOL.match(symbol):
            return Asset(known=False)
        return self.assets.get(symbol, Asset())

    def position(self, symbol: str) -> Decimal:
        pos = self.positions.get(symbol)
        return pos.qty if pos else Decimal(0)

    def held_for(self, symbol: str, side: str) -> list[Order]:
        return [o for o in self.order_list if o.open and o.symbol == symbol and o.side == side]

    def cash(self) -> Decimal:
        spent = sum(
            (o.filled_notional if o.side == "buy" else -o.filled_notional) for o in self.order_list
        )
        return self.flags.buying_power_base - Decimal(spent)

    def buying_power(self) -> Decimal:
        held = sum(
            o.remaining * (o.limit_price or self.price(o.symbol))
            for o in self.order_list
            if o.open and o.side == "buy"
        )
        return self.cash() - Decimal(held)

    def _record_fill(self, order: Order, before: Decimal) -> None:
        delta = order.filled_qty - before
        if delta:
            signed = delta if order.side == "buy" else -delta
            pos = self.positions.setdefault(order.symbol, Position())
            pos.apply(signed, self.price(order.symbol))

    def _create(
        self,
        *,
        cid: str,
        symbol: str,
        side: str,
        qty: Decimal,
        status: str,
        plan: str,
        fields: dict[str, Any] | None = None,
    ) -> Order:
        now = self.now()
        held = self.position(symbol)
        intent = (
            ("buy_to_close" if held < 0 else "buy_to_open")
            if side == "buy"
            else ("sell_to_close" if held > 0 else "sell_to_open")
        )
        order = Order(
            id=self.new_uuid(), client_order_id=cid, symbol=symbol,
            asset_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"fake-alpaca/{symbol}")),
            side=side, qty=qty, status=status,
            created_ns=now, submitted_ns=now - self._ids.randrange(100_000, 2_000_000),
            position_intent=intent, plan=plan, **{**_MARKET_DAY, **(fields or {})},
        )  # fmt: skip
        self.order_list.append(order)
        self.by_cid[cid] = order
        return order

    # ----- POST /v2/orders -----
    def place(self, body: object) -> Reply:
        if self.flags.account_blocked or self.flags.trading_blocked:
            return 403, wire.error(40310000, "account is not allowed to trade")  # unverified
        checked = check_body(body)
        if isinstance(checked, tuple):
            return checked
        symbol, qty, side = checked.symbol, checked.qty, checked.side
        asset, plan = self.asset(symbol), self.plans.get(symbol, "fill")
        if not asset.known:
            return 422, wire.error(42210000, f'asset "{symbol}" not found')
        if not asset.tradable or plan == "reject_now":
            return 422, wire.error(42210000, f'asset "{symbol}" is not tradable')
        fractional = qty != qty.to_integral_value()
        if fractional:
            if not asset.fractionable:
                return 422, wire.error(42210000, "requested asset is not fractionable")
            if checked.fields["type"] != "market":
                return 422, wire.error(42210000, "fractional orders must be market orders")
            if checked.fields["time_in_force"] != "day":
                return 422, wire.error(42210000, "fractional orders must be DAY orders")
        if side == "sell":
            refused = self._check_sell(symbol, qty, fractional, asset)
            if refused:
                return refused
        else:
            cost = qty * (checked.fields.get("limit_price") or self.price(symbol))
            available = self.buying_power()
            if cost > available or plan == "insufficient_buying_power":
                return 403, wire.error(40310000, "insufficient buying power",
                                       buying_power=wire.plain(available),
                                       cost_basis=wire.plain(cost))  # fmt: skip
        if checked.cid in self.by_cid:
            return 422, dict(wire.DUPLICATE_ID)
        cid = checked.cid or self.new_uuid()
        status = "new" if self.is_open and plan != "reject_later" else "accepted"
        order = self._create(cid=cid, symbol=symbol, side=side, qty=qty, status=status,
                             plan=plan, fields=checked.fields)  # fmt: skip
        return 200, order.to_wire()

    def _check_sell(
        self, symbol: str, qty: Decimal, fractional: bool, asset: Asset
    ) -> Reply | None:
        existing = self.position(symbol)
        holding = self.held_for(symbol, "sell")
        held = sum((o.remaining for o in holding), Decimal(0))
        available = max(Decimal(0), existing - held)
        if qty <= available:
            return None
        if fractional:
            return 422, wire.error(42210000, "fractional orders are not allowed to short")
        if asset.shortable and self.flags.shorting_enabled:
            return None
        message = (f"insufficient qty available for order (requested: {wire.plain(qty)}, "
                   f"available: {wire.plain(available)})")  # fmt: skip
        return 403, wire.error(
            40310000, message, available=wire.plain(available),
            existing_qty=wire.plain(existing), held_for_orders=wire.plain(held),
            related_orders=[o.id for o in holding], symbol=symbol,
        )  # fmt: skip

    # ----- reads and cancel -----
    def get(self, order_id: str) -> Reply:
        if not _is_uuid(order_id):
            return 422, dict(wire.BAD_ORDER_ID)
        for order in self.order_list:
            if order.id == order_id:
                return 200, order.to_wire()
        return 404, dict(wire.ORDER_NOT_FOUND)

    def by_client_order_id(self, cid: str | None) -> Reply:
        if not cid:
            return 422, wire.invalid("client_order_id is missing")
        order = self.by_cid.get(cid)
        if order is None or self.now() - order.created_ns < self.lookup_lag_ns:
            return 404, dict(wire.ORDER_NOT_FOUND)
        return 200, order.to_wire()

    def list(self, query: dict[str, str]) -> Reply:
        return list_orders(self.order_list, query)

    def cancel(self, order_id: str) -> Reply:
        if not _is_uuid(order_id):
            return 422, dict(wire.BAD_ORDER_ID)
        for order in self.order_list:
            if order.id == order_id:
                if order.status in TERMINAL:
                    message = f'order is already in "{order.status}" state'
                    return 422, wire.error(42210000, message)
                order.end("canceled", self.now())
                return 204, None
        return 404, dict(wire.ORDER_NOT_FOUND)

    # ----- time passing -----
    def tick(self) -> None:
        """One fill step for every working order (only ``reject_later`` moves while closed)."""
        for order in list(self.order_list):
            if not order.open or (not self.is_open and order.plan != "reject_later"):
                continue
            before = order.filled_qty
            successor = advance(order, price=self.price(order.symbol),
                                fill_steps=self.fill_steps, now_ns=self.now())  # fmt: skip
            self._record_fill(order, before)
            if successor is not None:
                old = successor.old
                new = self._create(
                    cid=f"{old.client_order_id}-r", symbol=old.symbol, side=old.side,
                    qty=old.qty, status="new", plan="fill",
                    fields={"type": old.type, "time_in_force": old.time_in_force,
                            "limit_price": old.limit_price, "replaces": old.id},
                )  # fmt: skip
                old.replaced_by = new.id

    def open_market(self) -> None:
        self.is_open = True
        for order in self.order_list:
            if order.status == "accepted" and order.plan != "reject_later":
                order.status, order.updated_ns = "new", self.now()

    def close_market(self) -> None:
        """Every open day order expires (its filled part kept) [I21]; the market closes."""
        for order in self.order_list:
            if order.open and order.time_in_force == "day":
                order.end("expired", self.now())
        self.is_open = False

    # ----- set-up by tests -----
    def add_foreign(self, cid: str, symbol: str, side: str, qty: Decimal, status: str) -> None:
        """An order the bot did not create: ``filled`` fills at once (moving the position),
        ``partially_filled`` fills half; other statuses are taken as they are (never filling)."""
        if cid in self.by_cid:
            raise ValueError(f"client_order_id {cid!r} already used")
        if side not in ("buy", "sell") or not qty > 0:
            raise ValueError("side must be buy or sell and qty > 0")
        order = self._create(cid=cid, symbol=symbol, side=side, qty=qty, status="new",
                             plan="never_fill")  # fmt: skip
        if status in ("filled", "partially_filled"):
            order.fill(qty if status == "filled" else half(qty), self.price(symbol), self.now())
            self._record_fill(order, Decimal(0))
        elif status in ("canceled", "expired", "rejected"):
            order.end(status, self.now())
        else:
            order.status = status

    def set_position(self, symbol: str, qty: Decimal) -> None:
        """Make the account hold exactly ``qty`` (signed), bought at the current price."""
        self.positions[symbol] = Position(qty, self.price(symbol))


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
