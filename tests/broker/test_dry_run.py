from __future__ import annotations

from decimal import Decimal

from bot.broker import DryRunBroker, OrderRequest, OrderState, OrderStatus
from bot.core.model import Direction


async def test_fills_at_once_at_the_reference_price_and_is_stateless() -> None:
    broker = DryRunBroker()
    request = OrderRequest(
        "bot-0123456789abcdef-1", "AAPL", Direction.BUY, Decimal(3), Decimal("209.5")
    )
    expected = OrderState(
        broker_order_id="dry-bot-0123456789abcdef-1",
        client_order_id="bot-0123456789abcdef-1",
        symbol="AAPL",
        side=Direction.BUY,
        qty=Decimal(3),
        status=OrderStatus.FILLED,
        filled_qty=Decimal(3),
        filled_avg_price=Decimal("209.5"),
    )
    assert await broker.place(request) == expected
    assert await broker.place(request) == expected  # same key, identical result
    assert expected.terminal and not expected.rejected
    assert await broker.lookup(request.client_order_id) is None
    assert (await broker.clock()).is_open
