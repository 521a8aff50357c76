from __future__ import annotations

from decimal import Decimal

from bot.broker import DryRunBroker, OrderRequest, OrderState
from bot.core.model import Direction


async def test_fills_at_once_at_the_reference_price_and_is_stateless() -> None:
    broker = DryRunBroker()
    request = OrderRequest("bot-0123456789abcdef-1", "AAPL", Direction.BUY, 3, Decimal("209.5"))
    expected = OrderState(
        broker_order_id="dry-bot-0123456789abcdef-1",
        status="filled",
        filled_qty=Decimal(3),
        filled_avg_price=Decimal("209.5"),
        terminal=True,
        rejected=False,
    )
    assert await broker.place(request) == expected
    assert await broker.place(request) == expected  # same key, identical result
    assert await broker.lookup(request.client_order_id) is None
