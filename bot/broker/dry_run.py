"""The stateless ``dry-run`` broker (default): fills every order at once at its reference price."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from bot.broker.base import (
    AccountState,
    AssetInfo,
    BrokerPosition,
    MarketClock,
    OrderRequest,
    OrderState,
    OrderStatus,
)


class DryRunBroker:
    """Fills at ``reference_price``, order id ``dry-<client_order_id>``; its market is always open.

    Stateless: ``lookup`` always answers ``None``, so an execution left PENDING by a crash is placed
    again with the same ``client_order_id`` after a restart and gets the identical result. It
    holds no positions (``keeps_positions`` is false: no reconciliation).
    """

    kind = "dry-run"
    host = "dry-run"
    keeps_positions = False

    async def place(self, order: OrderRequest) -> OrderState:
        return OrderState(
            broker_order_id=f"dry-{order.client_order_id}",
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            qty=order.qty,
            status=OrderStatus.FILLED,
            filled_qty=order.qty,
            filled_avg_price=order.reference_price,
        )

    async def lookup(self, client_order_id: str) -> OrderState | None:
        return None

    async def get_order(self, broker_order_id: str) -> OrderState | None:
        return None

    async def orders_since(self, after: datetime) -> list[OrderState]:
        return []

    async def cancel(self, broker_order_id: str) -> None:
        return None

    async def clock(self) -> MarketClock:
        return MarketClock(datetime.now(UTC), is_open=True, next_open=None, next_close=None)

    async def account(self) -> AccountState:
        return AccountState(
            account_id="dry-run",
            status="ACTIVE",
            trading_blocked=False,
            account_blocked=False,
            shorting_enabled=True,
            buying_power=Decimal("Infinity"),
        )

    async def positions(self) -> list[BrokerPosition]:
        return []

    async def asset(self, symbol: str) -> AssetInfo | None:
        return AssetInfo(symbol, tradable=True, fractionable=True, shortable=True)

    async def aclose(self) -> None:
        return None
