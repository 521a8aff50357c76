"""The broker contract (bot/broker/base.py rules), one suite for every broker in contract_kit.

Each case runs only over the brokers that declare the capability it needs; nothing is skipped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.broker.base import OrderStatus
from bot.errors import BrokerAccountRefused, BrokerRejected, OutcomeUnknown
from tests.broker.contract_kit import (
    ACCOUNT_REFUSAL,
    EXPIRES_AT_CLOSE,
    FILLS,
    FILLS_AT_ONCE,
    LOST_ANSWER,
    PARTIAL_FILL,
    REGISTRY,
    REJECTS_AT_ONCE,
    REJECTS_LATER,
    REMEMBERS_ORDERS,
    REPLACES,
    SAME_STATE_ON_DUPLICATE,
    BrokerUnderTest,
    brokers_with,
)


@pytest.fixture
async def under_test(request: pytest.FixtureRequest) -> AsyncIterator[BrokerUnderTest]:
    async with REGISTRY[request.param].open() as broker_under_test:
        yield broker_under_test


def over(*capabilities: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("under_test", brokers_with(*capabilities), indirect=True)


@over(SAME_STATE_ON_DUPLICATE)
async def test_placing_one_id_twice_returns_the_same_order(under_test: BrokerUnderTest) -> None:
    request = under_test.request("AAPL")
    first = await under_test.broker.place(request)
    second = await under_test.broker.place(request)
    assert second.broker_order_id == first.broker_order_id
    assert (second.client_order_id, second.symbol, second.side, second.qty) == (
        request.client_order_id,
        request.symbol,
        request.side,
        request.qty,
    )
    assert (await under_test.follow(second)).status is OrderStatus.FILLED


@over(FILLS)
async def test_an_ordinary_order_fills_in_full(under_test: BrokerUnderTest) -> None:
    request = under_test.request("MSFT", qty="0.123456789")
    final = await under_test.follow(await under_test.broker.place(request))
    assert final.status is OrderStatus.FILLED
    assert final.filled_qty == request.qty
    assert final.filled_avg_price is not None and final.filled_avg_price > 0


@over(FILLS_AT_ONCE)
async def test_fills_at_once_at_the_reference_price(under_test: BrokerUnderTest) -> None:
    request = under_test.request("NVDA", qty="2", price="123.45")
    state = await under_test.broker.place(request)
    assert state.terminal and state.status is OrderStatus.FILLED
    assert (state.filled_qty, state.filled_avg_price) == (request.qty, request.reference_price)


@over(REMEMBERS_ORDERS)
async def test_one_id_is_one_order_at_the_broker(under_test: BrokerUnderTest) -> None:
    request = under_test.request("AAPL")
    await under_test.broker.place(request)
    await under_test.broker.place(request)
    await under_test.broker.place(request)
    assert under_test.remote.orders_with(request.client_order_id) == 1


@over(REMEMBERS_ORDERS)
async def test_lookup_knows_an_id_only_once_it_is_placed(under_test: BrokerUnderTest) -> None:
    request = under_test.request("AAPL")
    assert await under_test.broker.lookup(request.client_order_id) is None
    placed = await under_test.broker.place(request)
    found = await under_test.broker.lookup(request.client_order_id)
    assert found is not None and found.broker_order_id == placed.broker_order_id


@over(LOST_ANSWER)
@pytest.mark.parametrize("how", ["timeout", "5xx", "drop"])
async def test_a_lost_answer_is_an_unknown_outcome_resolved_by_the_same_id(
    under_test: BrokerUnderTest, how: str
) -> None:
    request = under_test.request("TSLA")
    under_test.remote.lose_next_answer(how)
    with pytest.raises(OutcomeUnknown):
        await under_test.broker.place(request)
    await under_test.remote.until_visible(request.client_order_id)
    found = await under_test.broker.lookup(request.client_order_id)
    assert found is not None
    again = await under_test.broker.place(request)  # the retry a restart would make
    assert again.broker_order_id == found.broker_order_id
    assert under_test.remote.orders_with(request.client_order_id) == 1


@over(LOST_ANSWER, ACCOUNT_REFUSAL)
async def test_an_account_refusal_after_an_unknown_outcome_places_nothing_more(
    under_test: BrokerUnderTest,
) -> None:
    request = under_test.request("AMZN")
    under_test.remote.lose_next_answer("5xx")
    with pytest.raises(OutcomeUnknown):
        await under_test.broker.place(request)
    under_test.remote.refuse_account()
    try:
        state = await under_test.broker.place(request)
    except BrokerAccountRefused:
        pass  # the first attempt may hold the buying power: the caller keeps it in flight
    else:
        assert state.client_order_id == request.client_order_id
    assert under_test.remote.orders_with(request.client_order_id) == 1
    found = await under_test.broker.lookup(request.client_order_id)
    assert found is not None and found.client_order_id == request.client_order_id


@over(PARTIAL_FILL)
async def test_a_partial_fill_then_cancel_keeps_what_filled(under_test: BrokerUnderTest) -> None:
    request = under_test.request("GOOG", qty="4")
    under_test.remote.plan("GOOG", "partial_then_cancel")
    final = await under_test.follow(await under_test.broker.place(request))
    assert final.status is OrderStatus.CANCELED
    assert 0 < final.filled_qty < request.qty
    assert final.filled_avg_price is not None


@over(REJECTS_AT_ONCE)
async def test_a_refused_placement_places_nothing(under_test: BrokerUnderTest) -> None:
    request = under_test.request("META")
    under_test.remote.plan("META", "reject_now")
    with pytest.raises(BrokerRejected):
        await under_test.broker.place(request)
    assert await under_test.broker.lookup(request.client_order_id) is None
    assert under_test.remote.orders_with(request.client_order_id) == 0


@over(REJECTS_LATER)
async def test_a_rejection_can_arrive_later_as_a_status(under_test: BrokerUnderTest) -> None:
    request = under_test.request("NFLX")
    under_test.remote.plan("NFLX", "reject_later")
    placed = await under_test.broker.place(request)
    assert not placed.terminal
    final = await under_test.follow(placed)
    assert final.rejected and final.status is OrderStatus.REJECTED
    assert final.filled_qty == 0 and final.filled_avg_price is None


@over(EXPIRES_AT_CLOSE)
async def test_a_day_order_open_at_the_close_expires(under_test: BrokerUnderTest) -> None:
    request = under_test.request("IBM")
    under_test.remote.plan("IBM", "never_fill")
    placed = await under_test.broker.place(request)
    assert not placed.terminal
    under_test.remote.close_market()
    final = await under_test.follow(placed)
    assert final.status is OrderStatus.EXPIRED
    assert final.filled_qty == 0


@over(REPLACES)
async def test_a_replaced_order_is_followed_to_its_successor(under_test: BrokerUnderTest) -> None:
    request = under_test.request("ORCL")
    under_test.remote.plan("ORCL", "replace")
    placed = await under_test.broker.place(request)
    final = await under_test.follow(placed)
    assert final.terminal and final.broker_order_id != placed.broker_order_id
    original = await under_test.broker.get_order(placed.broker_order_id)
    assert original is not None and original.status is OrderStatus.REPLACED
    assert original.replaced_by == final.broker_order_id and not original.terminal
