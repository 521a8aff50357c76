"""The broker seam (SPEC §5): what the engine asks of a broker, and the rules every broker keeps.

Rules (the contract suite in ``tests/broker/`` checks them for every broker):

- ``place`` with a ``client_order_id`` the broker already knows returns **that order's state**
  (Alpaca answers 422 "client_order_id must be unique": the broker looks the order up). It never
  raises :class:`~bot.errors.BrokerRejected` for a duplicate id and never creates a second order.
- ``place`` raises :class:`~bot.errors.BrokerRejected` only when the broker refused the order and
  nothing was placed; :class:`~bot.errors.BrokerAccountRefused` for an account-wide refusal
  (insufficient buying power, shorting not allowed: not the ticker's fault);
  :class:`~bot.errors.BrokerAuthError` when the keys are refused;
  :class:`~bot.errors.BrokerRateLimited` when nothing was placed and the same request may be
  sent again after ``retry_after_s``.
- Every transport fault of ``place`` (timeout, 5xx, dropped connection, an answer that cannot be
  read) is :class:`~bot.errors.OutcomeUnknown`: the order may exist. The caller resolves it with
  ``lookup`` by the same ``client_order_id``, never with another id.
- Reads (``lookup``, ``orders_since``, ``clock``, …) raise
  :class:`~bot.errors.BrokerUnavailable` on transport faults; ``lookup`` answers ``None`` only
  when the broker says it does not know the id (which, right after an unknown outcome, does not
  prove the order will never exist).
- Quantities are exact ``Decimal`` values; statuses are :class:`OrderStatus`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from bot.core.model import Direction


class OrderStatus(StrEnum):
    """Alpaca's order statuses (the dry-run broker uses ``filled`` only)."""

    NEW = "new"
    ACCEPTED = "accepted"
    PENDING_NEW = "pending_new"
    ACCEPTED_FOR_BIDDING = "accepted_for_bidding"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    DONE_FOR_DAY = "done_for_day"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REPLACED = "replaced"
    PENDING_CANCEL = "pending_cancel"
    PENDING_REPLACE = "pending_replace"
    STOPPED = "stopped"
    REJECTED = "rejected"
    SUSPENDED = "suspended"
    CALCULATED = "calculated"
    HELD = "held"
    PENDING_REVIEW = "pending_review"

    @property
    def terminal(self) -> bool:
        """It will not change any more (``replaced`` is not: follow ``replaced_by``)."""
        return self in _TERMINAL


_TERMINAL = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED}
)


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A market, day order. ``qty`` is whole unless the asset is fractionable (SPEC §4)."""

    client_order_id: str
    symbol: str
    side: Direction
    qty: Decimal
    reference_price: Decimal  # link-weighted mean on-chain price (the dry-run fill price)


@dataclass(frozen=True, slots=True)
class OrderState:
    """The broker's view of one order."""

    broker_order_id: str
    client_order_id: str
    symbol: str
    side: Direction
    qty: Decimal
    status: OrderStatus
    filled_qty: Decimal
    filled_avg_price: Decimal | None
    submitted_at: datetime | None = None
    replaced_by: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status.terminal

    @property
    def rejected(self) -> bool:
        return self.status is OrderStatus.REJECTED


@dataclass(frozen=True, slots=True)
class MarketClock:
    timestamp: datetime
    is_open: bool
    next_open: datetime | None
    next_close: datetime | None


@dataclass(frozen=True, slots=True)
class AccountState:
    account_id: str
    status: str
    trading_blocked: bool
    account_blocked: bool
    shorting_enabled: bool
    buying_power: Decimal

    @property
    def may_trade(self) -> bool:
        return not (self.trading_blocked or self.account_blocked)


@dataclass(frozen=True, slots=True)
class BrokerPosition:
    """A position at the broker, signed: long +, short -."""

    symbol: str
    qty: Decimal


@dataclass(frozen=True, slots=True)
class AssetInfo:
    symbol: str
    tradable: bool
    fractionable: bool
    shortable: bool


class Broker(Protocol):
    """A broker the engine can hedge with (see the module docstring for the rules)."""

    @property
    def kind(self) -> str:
        """``"dry-run"`` or ``"alpaca"``: recorded in the database with :attr:`host`."""
        ...

    @property
    def host(self) -> str:
        """The API host orders go to (``"dry-run"`` for the dry-run broker)."""
        ...

    @property
    def keeps_positions(self) -> bool:
        """True when ``positions`` reports real holdings (reconciliation runs only then)."""
        ...

    async def place(self, order: OrderRequest) -> OrderState:
        """Place a market day order; see the rules for what it raises."""
        ...

    async def lookup(self, client_order_id: str) -> OrderState | None:
        """The order placed with this key; ``None`` when the broker does not know it (yet)."""
        ...

    async def get_order(self, broker_order_id: str) -> OrderState | None:
        """The order with this broker id (to follow ``replaced_by``); ``None`` if unknown."""
        ...

    async def orders_since(self, after: datetime) -> list[OrderState]:
        """Every order submitted after ``after`` (all statuses), in one request where possible."""
        ...

    async def cancel(self, broker_order_id: str) -> None:
        """Ask to cancel (the order may still fill: follow it until terminal)."""
        ...

    async def clock(self) -> MarketClock: ...

    async def account(self) -> AccountState: ...

    async def positions(self) -> list[BrokerPosition]: ...

    async def asset(self, symbol: str) -> AssetInfo | None:
        """``None`` for a symbol the broker does not know."""
        ...

    async def aclose(self) -> None: ...
