"""The stateless ``dry-run`` broker (default): fills every order at once at its reference price."""

from __future__ import annotations

from decimal import Decimal

from bot.broker.base import OrderRequest, OrderState


class DryRunBroker:
    """Fills at ``reference_price``, order id ``dry-<client_order_id>``.

    Stateless: ``lookup`` always answers ``None``, so an execution left PENDING by a crash is placed
    again with the same ``client_order_id`` after a restart and gets the identical result.
    """

    async def place(self, order: OrderRequest) -> OrderState:
        return OrderState(
            broker_order_id=f"dry-{order.client_order_id}",
            status="filled",
            filled_qty=Decimal(order.qty),
            filled_avg_price=order.reference_price,
            terminal=True,
            rejected=False,
        )

    async def lookup(self, client_order_id: str) -> OrderState | None:
        return None
