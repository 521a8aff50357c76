"""AlpacaBroker against the fake Alpaca server over real loopback HTTP: every answer mapping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from loguru import logger

from bot.broker.alpaca import AlpacaBroker
from bot.broker.base import OrderRequest, OrderState, OrderStatus
from bot.core.model import Direction
from bot.devnet.fake_alpaca import FakeAlpaca
from bot.errors import (
    BrokerAccountRefused,
    BrokerAuthError,
    BrokerRateLimited,
    BrokerRejected,
    BrokerUnavailable,
    OrderMismatch,
    OutcomeUnknown,
)
from tests.broker.contract_kit import wait_for

KEY_ID = "test-key-id-7f3a91"
SECRET = "test-secret-9b1c42d0"
CLIENT_TIMEOUT_S = 1.0  # generous for a loaded machine; SLOW_S stays well above it
SLOW_S = 3.5  # a slow answer lands well after the client gave up


@dataclass
class Served:
    fake: FakeAlpaca
    base_url: str
    broker: AlpacaBroker

    def other_broker(self, **overrides: Any) -> AlpacaBroker:
        settings: dict[str, Any] = {
            "base_url": self.base_url,
            "key_id": KEY_ID,
            "secret": SECRET,
            "timeout_s": CLIENT_TIMEOUT_S,
        }
        settings.update(overrides)
        return AlpacaBroker(**settings)


async def _serve(**fake_settings: Any) -> AsyncIterator[Served]:
    settings: dict[str, Any] = {
        "key_id": KEY_ID,
        "secret": SECRET,
        "step_s": 0.02,
        "rate_limit_per_min": 100_000,
        "seed": 0,
    }
    settings.update(fake_settings)
    fake = FakeAlpaca(**settings)
    base_url = await fake.start()
    fake.open_market()
    broker = AlpacaBroker(
        base_url=base_url,
        key_id=KEY_ID,
        secret=SECRET,
        timeout_s=CLIENT_TIMEOUT_S,
        requests_per_minute=10_000,
    )
    try:
        yield Served(fake, base_url, broker)
    finally:
        await broker.aclose()
        await fake.stop()


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async for value in _serve():
        yield value


@pytest.fixture
async def lagging() -> AsyncIterator[Served]:
    """A fake whose lookup does not see a new order for a while (ALPACA.md §1.3)."""
    async for value in _serve(lookup_lag_s=60.0):
        yield value


_ids = iter(range(1, 1_000_000))


def order(symbol: str = "AAPL", qty: str = "3", side: Direction = Direction.BUY) -> OrderRequest:
    return OrderRequest(f"bot-test-{next(_ids)}", symbol, side, Decimal(qty), Decimal(100))


async def until_terminal(served: Served, state: OrderState) -> OrderState:
    while not state.terminal:
        await asyncio.sleep(0.02)
        found = await served.broker.lookup(state.client_order_id)
        assert found is not None
        state = found
    return state


def orders_under(served: Served, client_order_id: str) -> int:
    return sum(1 for o in served.fake.orders() if o["client_order_id"] == client_order_id)


# -- place: the answers ----------------------------------------------------------------------


async def test_a_placement_round_trips_nine_decimals_and_fills(served: Served) -> None:
    request = order(qty="0.123456789")
    placed = await served.broker.place(request)
    assert placed.qty == Decimal("0.123456789")
    assert (placed.symbol, placed.side, placed.status) == ("AAPL", Direction.BUY, OrderStatus.NEW)
    assert placed.submitted_at is not None and placed.submitted_at.tzinfo is not None
    remote = served.fake.order_by_client_id(request.client_order_id)
    assert remote is not None and remote["qty"] == "0.123456789"
    assert (remote["type"], remote["time_in_force"], remote["side"]) == ("market", "day", "buy")
    final = await asyncio.wait_for(until_terminal(served, placed), 20)
    assert final.status is OrderStatus.FILLED and final.filled_qty == request.qty
    assert final.filled_avg_price == Decimal(100)


async def test_a_500_after_accept_is_unknown_and_the_retry_finds_the_order(
    served: Served,
) -> None:
    request = order()
    served.fake.inject("POST /v2/orders", "500_after")
    with pytest.raises(OutcomeUnknown, match="HTTP 500"):
        await served.broker.place(request)
    landed = served.fake.order_by_client_id(request.client_order_id)
    assert landed is not None
    again = await served.broker.place(request)  # 422 duplicate → lookup → the order
    assert again.broker_order_id == landed["id"]
    assert served.fake.post_attempts(request.client_order_id) == 2
    assert orders_under(served, request.client_order_id) == 1


async def test_a_500_before_is_unknown_and_nothing_exists(served: Served) -> None:
    request = order()
    served.fake.inject("POST /v2/orders", "500_before")
    with pytest.raises(OutcomeUnknown):
        await served.broker.place(request)
    assert await served.broker.lookup(request.client_order_id) is None
    placed = await served.broker.place(request)
    assert orders_under(served, request.client_order_id) == 1
    assert placed.client_order_id == request.client_order_id


async def test_a_slow_answer_is_unknown_not_found_meanwhile_then_found(served: Served) -> None:
    request = order()
    served.fake.inject("POST /v2/orders", "slow_after", delay_s=SLOW_S)
    with pytest.raises(OutcomeUnknown, match="no answer within"):
        await served.broker.place(request)
    assert await served.broker.lookup(request.client_order_id) is None  # still landing
    await wait_for(lambda: served.fake.order_by_client_id(request.client_order_id) is not None)
    found = await served.broker.lookup(request.client_order_id)
    assert found is not None and found.client_order_id == request.client_order_id
    assert (await served.broker.place(request)).broker_order_id == found.broker_order_id
    assert orders_under(served, request.client_order_id) == 1


@pytest.mark.parametrize(("fault", "exists"), [("drop_after", True), ("drop_before", False)])
async def test_a_dropped_connection_is_unknown(served: Served, fault: str, exists: bool) -> None:
    request = order()
    served.fake.inject("POST /v2/orders", fault)
    with pytest.raises(OutcomeUnknown):
        await served.broker.place(request)
    found = await served.broker.lookup(request.client_order_id)
    assert (found is not None) is exists


async def test_a_duplicate_not_visible_yet_is_unknown(lagging: Served) -> None:
    request = order()
    lagging.fake.inject("POST /v2/orders", "500_after")
    with pytest.raises(OutcomeUnknown):
        await lagging.broker.place(request)
    with pytest.raises(OutcomeUnknown, match="duplicate id not visible yet"):
        await lagging.broker.place(request)
    assert orders_under(lagging, request.client_order_id) == 1


@pytest.mark.parametrize("fault", ["500_before", "429"])
async def test_a_duplicate_whose_lookup_fails_is_unknown_never_rate_limited(
    served: Served, fault: str
) -> None:
    """The order exists, so the caller must resolve it, not treat it as "nothing placed"."""
    request = order()
    served.fake.inject("POST /v2/orders", "500_after")
    with pytest.raises(OutcomeUnknown):
        await served.broker.place(request)
    served.fake.inject("GET /v2/orders:by_client_order_id", fault)
    with pytest.raises(OutcomeUnknown, match="lookup failed") as caught:
        await served.broker.place(request)
    assert not isinstance(caught.value, BrokerRateLimited)
    assert (caught.value.retry_after_s is not None) is (fault == "429")
    assert orders_under(served, request.client_order_id) == 1


async def test_429_is_rate_limited_with_the_reset_as_the_wait(served: Served) -> None:
    request = order()
    served.fake.inject("POST /v2/orders", "429")
    with pytest.raises(BrokerRateLimited) as caught:
        await served.broker.place(request)
    assert caught.value.retry_after_s is not None
    assert 0.5 <= caught.value.retry_after_s <= 2.0  # the fake resets 1 s after the 429
    assert served.fake.order_by_client_id(request.client_order_id) is None
    assert (await served.broker.place(request)).client_order_id == request.client_order_id
    served.fake.inject("GET /v2/clock", "429")
    with pytest.raises(BrokerRateLimited):
        await served.broker.clock()


async def test_wrong_keys_are_an_auth_error_naming_the_config_keys(served: Served) -> None:
    broker = served.other_broker(secret="not-the-secret-at-all")
    try:
        with pytest.raises(BrokerAuthError) as caught:
            await broker.place(order())
        with pytest.raises(BrokerAuthError):
            await broker.account()
    finally:
        await broker.aclose()
    message = str(caught.value)
    assert "broker.alpaca.api_key_id" in message and "broker.alpaca.api_secret" in message
    assert "401" in message
    assert "not-the-secret-at-all" not in message and KEY_ID not in message


async def test_missing_keys_get_the_gateways_forbidden_and_an_auth_error(served: Served) -> None:
    broker = served.other_broker(key_id="", secret="")
    try:
        with pytest.raises(BrokerAuthError, match=r"403 forbidden\."):
            await broker.place(order())
        with pytest.raises(BrokerAuthError):
            await broker.lookup("bot-test-x")
    finally:
        await broker.aclose()


async def test_an_html_403_is_an_auth_error_an_html_502_is_unknown(served: Served) -> None:
    served.fake.inject("POST /v2/orders", "403_html")
    with pytest.raises(BrokerAuthError, match="403 Forbidden nginx"):
        await served.broker.place(order())
    served.fake.inject("POST /v2/orders", "502_html")
    with pytest.raises(OutcomeUnknown, match="502"):
        await served.broker.place(order())
    served.fake.inject("GET /v2/account", "403_html")
    with pytest.raises(BrokerAuthError):
        await served.broker.account()
    served.fake.inject("GET /v2/account", "502_html")
    with pytest.raises(BrokerUnavailable, match="502"):
        await served.broker.account()


async def test_insufficient_buying_power_is_an_account_refusal(served: Served) -> None:
    served.fake.set_account(buying_power=Decimal(10))
    request = order(qty="3")  # 300 at 100
    with pytest.raises(BrokerAccountRefused, match="insufficient buying power"):
        await served.broker.place(request)
    assert served.fake.order_by_client_id(request.client_order_id) is None
    served.fake.script("TSLA", "insufficient_buying_power")
    with pytest.raises(BrokerAccountRefused):
        await served.broker.place(order("TSLA"))


async def test_a_refused_asset_is_a_rejection(served: Served) -> None:
    served.fake.script("META", "reject_now")
    with pytest.raises(BrokerRejected, match="not tradable"):
        await served.broker.place(order("META"))
    served.fake.set_asset("ZZZZ", known=False)
    with pytest.raises(BrokerRejected, match="not found"):
        await served.broker.place(order("ZZZZ"))
    assert served.fake.orders() == []


async def test_another_order_under_our_id_is_a_mismatch(served: Served) -> None:
    request = order("AAPL", qty="3")
    served.fake.add_foreign_order(request.client_order_id, "TSLA", "buy", Decimal(3))
    with pytest.raises(OrderMismatch, match="TSLA"):
        await served.broker.place(request)  # 422 duplicate → lookup → not our order
    other_qty = order("AAPL", qty="3")
    served.fake.add_foreign_order(other_qty.client_order_id, "AAPL", "buy", Decimal(4))
    with pytest.raises(OrderMismatch):
        await served.broker.place(other_qty)
    other_side = order("AAPL", qty="3")
    served.fake.add_foreign_order(other_side.client_order_id, "AAPL", "sell", Decimal(3))
    with pytest.raises(OrderMismatch):
        await served.broker.place(other_side)
    assert len(served.fake.orders()) == 3


# -- reads -----------------------------------------------------------------------------------


async def test_the_clock_speaks_eastern_time(served: Served) -> None:
    now = datetime(2026, 3, 10, 14, 7, 4, 451420, tzinfo=UTC)
    next_open = datetime(2026, 3, 11, 13, 30, tzinfo=UTC)
    next_close = datetime(2026, 3, 10, 20, 0, tzinfo=UTC)
    served.fake.set_clock(is_open=True, now=now, next_open=next_open, next_close=next_close)
    clock = await served.broker.clock()
    assert clock.is_open
    assert clock.timestamp == now
    assert clock.timestamp.utcoffset() == timedelta(hours=-4)  # EDT
    assert (clock.next_open, clock.next_close) == (next_open, next_close)
    served.fake.close_market()
    assert not (await served.broker.clock()).is_open


async def test_account_and_its_flags(served: Served) -> None:
    account = await served.broker.account()
    assert account.account_id == "fake-account-0001" and account.status == "ACTIVE"
    assert account.may_trade and account.shorting_enabled
    assert account.buying_power == Decimal(1_000_000)
    served.fake.set_account(trading_blocked=True, shorting_enabled=False)
    account = await served.broker.account()
    assert not account.may_trade and not account.shorting_enabled


async def test_positions_are_signed(served: Served) -> None:
    assert await served.broker.positions() == []
    served.fake.set_position("AAPL", Decimal("3.5"))
    served.fake.set_position("TSLA", Decimal(-2))
    positions = {p.symbol: p.qty for p in await served.broker.positions()}
    assert positions == {"AAPL": Decimal("3.5"), "TSLA": Decimal(-2)}


async def test_assets_and_unknown_symbols(served: Served) -> None:
    served.fake.set_asset("BRK.B", tradable=True, fractionable=False, shortable=False)
    info = await served.broker.asset("BRK.B")
    assert info is not None and info.symbol == "BRK.B"
    assert (info.tradable, info.fractionable, info.shortable) == (True, False, False)
    served.fake.set_asset("NOPE", known=False)
    assert await served.broker.asset("NOPE") is None


async def test_get_order_and_cancel(served: Served) -> None:
    served.fake.script("IBM", "never_fill")
    placed = await served.broker.place(order("IBM"))
    assert await served.broker.get_order(placed.broker_order_id) == placed
    assert await served.broker.get_order("00000000-0000-4000-8000-000000000000") is None
    await served.broker.cancel(placed.broker_order_id)
    canceled = await served.broker.get_order(placed.broker_order_id)
    assert canceled is not None and canceled.status is OrderStatus.CANCELED
    await served.broker.cancel(placed.broker_order_id)  # 422 not cancelable: quiet
    await served.broker.cancel("00000000-0000-4000-8000-000000000000")  # 404: quiet
    served.fake.inject("DELETE /v2/orders/{id}", "500_before")
    with pytest.raises(BrokerUnavailable):
        await served.broker.cancel(placed.broker_order_id)


async def test_orders_since_pages_through_every_order_once(served: Served) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    for n in range(1203):
        served.fake.add_foreign_order(f"other-{n}", "AAPL", "buy", Decimal(1))
    orders = await served.broker.orders_since(start)
    assert sorted(o.client_order_id for o in orders) == sorted(f"other-{n}" for n in range(1203))
    assert [o.submitted_at for o in orders] == sorted(o.submitted_at for o in orders)  # type: ignore[type-var]
    assert await served.broker.orders_since(datetime.now(UTC) + timedelta(seconds=5)) == []


@pytest.mark.parametrize(
    ("fault", "count"), [("500_before", 1), ("drop_before", 2), ("slow_after", 1)]
)
async def test_read_faults_are_unavailable(served: Served, fault: str, count: int) -> None:
    served.fake.inject("GET /v2/orders:by_client_order_id", fault, count, delay_s=SLOW_S)
    with pytest.raises(BrokerUnavailable) as caught:
        await served.broker.lookup("bot-test-missing")
    assert not isinstance(caught.value, BrokerRateLimited)


async def test_aiohttp_resends_a_read_once_after_a_dropped_connection(served: Served) -> None:
    """RFC 9112 §9.3.1 (aiohttp does it for GET and DELETE, never for POST): one drop is masked."""
    served.fake.inject("GET /v2/orders:by_client_order_id", "drop_before")
    assert await served.broker.lookup("bot-test-missing") is None
    dropped, answered = served.fake.requests[-2:]
    assert (dropped[2], answered[2]) == (0, 404)


# -- pacing and secrets ----------------------------------------------------------------------


async def test_placements_keep_room_when_reads_have_used_their_share(served: Served) -> None:
    broker = served.other_broker(requests_per_minute=5)  # reads may use 4 of 5 a minute
    try:
        for _ in range(4):
            await broker.clock()
        before = len(served.fake.requests)
        waiting_read = asyncio.create_task(broker.clock())
        placed = await asyncio.wait_for(broker.place(order()), 10)
        assert placed.status is OrderStatus.NEW
        assert not waiting_read.done()  # it waits for the window, the placement did not
        assert len(served.fake.requests) == before + 1
        waiting_read.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting_read
    finally:
        await broker.aclose()


async def test_secrets_stay_out_of_logs_repr_and_errors(served: Served) -> None:
    lines: list[str] = []
    sink = logger.add(lines.append, level="DEBUG", format="{message} {extra}")
    errors: list[Exception] = []
    wrong = served.other_broker(secret=SECRET + "-wrong")
    try:
        for fault in ("500_after", "drop_after", "403_html", "429"):
            served.fake.inject("POST /v2/orders", fault)
            with pytest.raises(Exception) as caught:
                await served.broker.place(order())
            errors.append(caught.value)
        await served.broker.place(order())
        await served.broker.orders_since(datetime.now(UTC) - timedelta(minutes=1))
        with pytest.raises(BrokerAuthError) as auth:
            await wrong.account()
        errors.append(auth.value)
    finally:
        logger.remove(sink)
        await wrong.aclose()
    assert lines, "the client logs its requests at debug level"
    texts = [*lines, *(str(e) for e in errors), *(repr(e) for e in errors)]
    texts += [repr(served.broker), str(served.broker), repr(served.broker.__dict__)]
    for text in texts:
        assert KEY_ID not in text and SECRET not in text, text
    host = served.base_url.removeprefix("http://")
    assert served.broker.host == host
    assert repr(served.broker) == f"AlpacaBroker(host={host!r})"
    assert (served.broker.kind, served.broker.keeps_positions) == ("alpaca", True)
