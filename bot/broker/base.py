"""The broker port: place an order by ``client_order_id``, look it up by the same key (SPEC §5).

``place`` raises :class:`bot.errors.BrokerRejected` when the broker said no (nothing was placed)
and :class:`bot.errors.OutcomeUnknown` when the order may or may not exist (timeout, 5xx,
dropped connection): the caller then resolves it with ``lookup``, never with a second order.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from bot.core.model import Direction


@dataclass(frozen=True, slots=True)
class OrderRequest:
    client_order_id: str
    symbol: str
    side: Direction
    qty: int
    reference_price: Decimal  # link-weighted mean on-chain price (the dry-run fill price)


@dataclass(frozen=True, slots=True)
class OrderState:
    """The broker's view of one order. ``terminal``: it will not change any more.

    ``rejected``: the broker refused it (counts towards parking when nothing filled).
    """

    broker_order_id: str
    status: str
    filled_qty: Decimal
    filled_avg_price: Decimal | None
    terminal: bool
    rejected: bool


class Broker(Protocol):
    async def place(self, order: OrderRequest) -> OrderState:
        """Place a market order; raises ``BrokerRejected`` or ``OutcomeUnknown``."""
        ...

    async def lookup(self, client_order_id: str) -> OrderState | None:
        """The order placed with this key; ``None`` when the broker never saw it."""
        ...
