"""The fake Alpaca over real HTTP: order reads and cancels, clock, account, positions."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import aiohttp
import pytest

from bot.devnet.fake_alpaca import FakeAlpaca
from tests.devnet.fake_alpaca_support import SLOW, call, order_body, served

NOT_FOUND = (404, {"code": 40410000, "message": "order not found"})
EASTERN_NS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}-0[45]:00$")
EASTERN_S = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:00-0[45]:00$")


@pytest.fixture
async def fake() -> FakeAlpaca:
    return FakeAlpaca(step_s=SLOW)


@pytest.fixture
async def http(fake: FakeAlpaca) -> AsyncIterator[aiohttp.ClientSession]:
    async with served(fake) as session:
        yield session


async def test_order_lookups_and_their_errors(http: aiohttp.ClientSession) -> None:
    _, order = await call(http, "POST", "/v2/orders", json=order_body("l1"))
    assert await call(http, "GET", f"/v2/orders/{order['id']}") == (200, order)
    assert await call(http, "GET", "/v2/orders:by_client_order_id?client_order_id=l1") == (
        200,
        order,
    )
    assert await call(http, "GET", f"/v2/orders/{uuid.uuid4()}") == NOT_FOUND
    assert await call(http, "GET", "/v2/orders:by_client_order_id?client_order_id=zz") == NOT_FOUND
    assert await call(http, "GET", "/v2/orders/not-a-uuid") == (
        422,
        {"code": 40010001, "message": "order_id is missing"},
    )


async def test_lookup_lag_hides_a_new_order_from_the_client_id_lookup() -> None:
    fake = FakeAlpaca(step_s=SLOW, lookup_lag_s=0.3)
    async with served(fake) as http:
        posted = time.monotonic()
        _, order = await call(http, "POST", "/v2/orders", json=order_body("lag"))
        path = "/v2/orders:by_client_order_id?client_order_id=lag"
        assert await call(http, "GET", path) == NOT_FOUND
        assert (await call(http, "GET", f"/v2/orders/{order['id']}"))[0] == 200
        deadline = time.monotonic() + 5
        while (await call(http, "GET", path))[0] != 200:
            assert time.monotonic() < deadline, "the order never became visible"
            await asyncio.sleep(0.02)
        assert time.monotonic() - posted >= 0.3


async def test_order_list_filters(fake: FakeAlpaca, http: aiohttp.ClientSession) -> None:
    fake.script("MSFT", "never_fill")
    ids = []
    for cid, symbol in [("o1", "AAPL"), ("o2", "MSFT"), ("o3", "AAPL")]:
        _, order = await call(http, "POST", "/v2/orders", json=order_body(cid, symbol=symbol))
        ids.append(order)
    fake.step()  # o1, o3 fill; o2 stays open

    async def cids(query: str) -> list[str]:
        status, orders = await call(http, "GET", f"/v2/orders{query}")
        assert status == 200
        return [o["client_order_id"] for o in orders]

    assert await cids("") == ["o2"]
    assert await cids("?status=closed") == ["o3", "o1"]
    assert await cids("?status=all&direction=asc") == ["o1", "o2", "o3"]
    assert await cids("?status=all&limit=2") == ["o3", "o2"]
    assert await cids("?status=all&symbols=AAPL,TSLA") == ["o3", "o1"]
    first, last = ids[0]["submitted_at"], ids[2]["submitted_at"]
    assert await cids(f"?status=all&after={first}") == ["o3", "o2"]  # exclusive
    assert await cids(f"?status=all&after={first}&until={last}") == ["o2"]
    assert await cids("?status=all&after=2000-01-01T00:00:00Z&direction=asc") == ["o1", "o2", "o3"]
    for query, message in [
        ("?limit=501", "limit must be between 1 and 500"),
        ("?status=weird", "invalid status"),
        ("?after=yesterday", "invalid after"),
    ]:
        assert await call(http, "GET", f"/v2/orders{query}") == (
            422,
            {"code": 40010001, "message": message},
        )


async def test_cancel_keeps_the_filled_part_and_refuses_ended_orders() -> None:
    fake = FakeAlpaca(step_s=SLOW, fill_steps=2)
    async with served(fake) as http:
        _, order = await call(http, "POST", "/v2/orders", json=order_body("k"))
        fake.step()
        async with http.delete(f"/v2/orders/{order['id']}") as resp:
            assert (resp.status, await resp.read()) == (204, b"")
        _, now = await call(http, "GET", f"/v2/orders/{order['id']}")
        assert (now["status"], now["filled_qty"], now["filled_avg_price"]) == (
            "canceled",
            "5",
            "100",
        )
        assert await call(http, "DELETE", f"/v2/orders/{order['id']}") == (
            422,
            {"code": 42210000, "message": 'order is already in "canceled" state'},
        )
        _, done = await call(http, "POST", "/v2/orders", json=order_body("k2"))
        fake.step()
        fake.step()
        assert await call(http, "DELETE", f"/v2/orders/{done['id']}") == (
            422,
            {"code": 42210000, "message": 'order is already in "filled" state'},
        )
        assert await call(http, "DELETE", f"/v2/orders/{uuid.uuid4()}") == NOT_FOUND
        assert fake.signed_filled("AAPL") == 15


async def test_clock_speaks_eastern_time_with_offsets(
    fake: FakeAlpaca, http: aiohttp.ClientSession
) -> None:
    status, clock = await call(http, "GET", "/v2/clock")
    assert status == 200 and clock["is_open"] is True
    assert EASTERN_NS.match(clock["timestamp"]), clock
    assert EASTERN_S.match(clock["next_open"]) and EASTERN_S.match(clock["next_close"])
    fake.set_clock(
        is_open=False,
        now=datetime(2022, 4, 28, 18, 7, 4, 451420, tzinfo=UTC),
        next_open=datetime(2022, 4, 29, 13, 30, tzinfo=UTC),
        next_close=datetime(2022, 4, 29, 20, 0, tzinfo=UTC),
    )
    assert await call(http, "GET", "/v2/clock") == (
        200,
        {
            "timestamp": "2022-04-28T14:07:04.451420000-04:00",
            "is_open": False,
            "next_open": "2022-04-29T09:30:00-04:00",
            "next_close": "2022-04-29T16:00:00-04:00",
        },
    )
    fake.set_clock(is_open=True, now=datetime(2022, 12, 1, 15, 0, tzinfo=UTC))
    _, winter = await call(http, "GET", "/v2/clock")
    assert winter["timestamp"] == "2022-12-01T10:00:00.000000000-05:00"
    assert winter["next_close"] == "2022-12-01T16:00:00-05:00"


async def test_account_fields_and_blocks(fake: FakeAlpaca, http: aiohttp.ClientSession) -> None:
    status, account = await call(http, "GET", "/v2/account")
    assert status == 200
    assert (account["id"], account["status"], account["currency"]) == (
        "fake-account-0001",
        "ACTIVE",
        "USD",
    )
    money_fields = ["buying_power", "regt_buying_power", "non_marginable_buying_power", "cash"]
    money_fields += ["equity", "portfolio_value", "long_market_value", "short_market_value"]
    for money in money_fields:
        assert isinstance(account[money], str), money
    assert account["buying_power"] == "1000000"
    for flag in (
        "trading_blocked",
        "transfers_blocked",
        "account_blocked",
        "trade_suspended_by_user",
    ):
        assert account[flag] is False
    assert account["shorting_enabled"] is True
    assert {"account_number", "multiplier", "created_at"} <= set(account)
    fake.set_account(trading_blocked=True, shorting_enabled=False)
    _, blocked = await call(http, "GET", "/v2/account")
    assert (blocked["trading_blocked"], blocked["shorting_enabled"]) == (True, False)
    status, body = await call(http, "POST", "/v2/orders", json=order_body("t"))
    assert (status, body["code"]) == (403, 40310000)
    assert fake.orders() == []


async def test_positions_follow_fills_and_set_position(
    fake: FakeAlpaca, http: aiohttp.ClientSession
) -> None:
    fake.set_price("TSLA", Decimal("200"))
    fake.set_position("TSLA", Decimal(-3))
    await call(http, "POST", "/v2/orders", json=order_body("p1", symbol="AAPL", qty="2.5"))
    fake.step()
    status, positions = await call(http, "GET", "/v2/positions")
    assert status == 200
    by_symbol = {p["symbol"]: p for p in positions}
    assert set(by_symbol) == {"AAPL", "TSLA"}
    tsla = by_symbol["TSLA"]
    assert (tsla["qty"], tsla["side"], tsla["avg_entry_price"]) == ("3", "short", "200")
    assert (tsla["market_value"], tsla["current_price"]) == ("-600", "200")
    aapl = by_symbol["AAPL"]
    assert (aapl["qty"], aapl["qty_available"], aapl["side"]) == ("2.5", "2.5", "long")
    assert {"asset_id", "exchange", "asset_class", "cost_basis", "unrealized_pl"} <= set(aapl)
    fake.set_position("AAPL", Decimal(0))
    _, positions = await call(http, "GET", "/v2/positions")
    assert [p["symbol"] for p in positions] == ["TSLA"]  # flat symbols are absent
    assert await call(http, "GET", "/v2/positions/AAPL") == (
        404,
        {"code": 40410000, "message": "position does not exist"},
    )


async def test_foreign_orders_show_in_history_and_fills(
    fake: FakeAlpaca, http: aiohttp.ClientSession
) -> None:
    fake.add_foreign_order("bot-other-7", "AAPL", "sell", Decimal(4))
    fake.add_foreign_order("manual-1", "AAPL", "buy", Decimal(1), status="canceled")
    _, orders = await call(http, "GET", "/v2/orders?status=all&direction=asc")
    assert [(o["client_order_id"], o["status"], o["filled_qty"]) for o in orders] == [
        ("bot-other-7", "filled", "4"),
        ("manual-1", "canceled", "0"),
    ]
    assert fake.signed_filled("AAPL") == -4
    fake.add_foreign_order("manual-2", "MSFT", "buy", Decimal(5), status="partially_filled")
    _, open_orders = await call(http, "GET", "/v2/orders")
    assert [(o["client_order_id"], o["status"], o["filled_qty"]) for o in open_orders] == [
        ("manual-2", "partially_filled", "2")
    ]
    fake.step()
    assert fake.signed_filled("MSFT") == 2  # a foreign order never moves by itself
    with pytest.raises(ValueError, match="already used"):
        fake.add_foreign_order("manual-2", "MSFT", "buy", Decimal(1))
    _, positions = await call(http, "GET", "/v2/positions")
    assert [(p["symbol"], p["qty"], p["side"]) for p in positions] == [
        ("AAPL", "4", "short"),
        ("MSFT", "2", "long"),
    ]
    assert await call(http, "POST", "/v2/orders", json=order_body("bot-other-7")) == (
        422,
        {"code": 40010001, "message": "client_order_id must be unique"},
    )
