"""The fake Alpaca over real HTTP: orders, their life, plans, reads (ALPACA.md §1-§6).

Reads and cancels are in ``test_fake_alpaca_reads.py``; faults, rate limit, auth and the ways to
run it in ``test_fake_alpaca_wire.py``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import aiohttp
import pytest

from bot.devnet.fake_alpaca import FakeAlpaca
from tests.devnet.fake_alpaca_support import SLOW, call, order_body, served, status_of, wait_until

UTC_NS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z$")
ORDER_FIELDS = {
    "id", "client_order_id", "created_at", "updated_at", "submitted_at", "filled_at",
    "expired_at", "canceled_at", "failed_at", "replaced_at", "replaced_by", "replaces",
    "asset_id", "symbol", "asset_class", "notional", "qty", "filled_qty", "filled_avg_price",
    "order_class", "order_type", "type", "side", "position_intent", "time_in_force",
    "limit_price", "stop_price", "status", "extended_hours", "legs", "trail_percent",
    "trail_price", "hwm",
}  # fmt: skip


@pytest.fixture
async def fake() -> FakeAlpaca:
    return FakeAlpaca(step_s=SLOW)  # steps by hand: every intermediate state is observable


@pytest.fixture
async def http(fake: FakeAlpaca) -> AsyncIterator[aiohttp.ClientSession]:
    async with served(fake) as session:
        yield session


async def test_post_answers_200_with_every_order_field(
    fake: FakeAlpaca, http: aiohttp.ClientSession
) -> None:
    status, order = await call(http, "POST", "/v2/orders", json=order_body("c1"))
    assert status == 200
    assert set(order) == ORDER_FIELDS
    assert uuid.UUID(order["id"]).version == 4
    assert (order["status"], order["qty"], order["filled_qty"]) == ("new", "10", "0")
    assert order["filled_avg_price"] is None and order["notional"] is None
    assert (order["asset_class"], order["order_class"], order["order_type"]) == (
        "us_equity",
        "simple",
        "market",
    )
    assert order["position_intent"] == "buy_to_open"
    for name in ("created_at", "updated_at", "submitted_at"):
        assert UTC_NS.match(order[name]), order[name]
    assert order["submitted_at"] < order["created_at"]
    assert fake.orders() == [order]


async def test_fills_over_steps_at_the_symbols_price() -> None:
    fake = FakeAlpaca(step_s=SLOW, fill_steps=3)
    async with served(fake) as http:
        fake.set_price("AAPL", Decimal("123.45"))
        _, order = await call(http, "POST", "/v2/orders", json=order_body("c1", qty=10))
        assert order["qty"] == "10"  # a JSON number is accepted and answered as a string
        seen = []
        for _ in range(3):
            fake.step()
            _, now = await call(http, "GET", f"/v2/orders/{order['id']}")
            seen.append((now["status"], now["filled_qty"]))
        assert seen == [("partially_filled", "3"), ("partially_filled", "6"), ("filled", "10")]
        assert now["filled_avg_price"] == "123.45"
        assert UTC_NS.match(now["filled_at"])
        _, positions = await call(http, "GET", "/v2/positions")
        assert [(p["symbol"], p["qty"], p["side"]) for p in positions] == [("AAPL", "10", "long")]
        assert fake.signed_filled("AAPL") == 10


async def test_orders_fill_on_their_own_in_the_background() -> None:
    fake = FakeAlpaca(step_s=0.01, fill_steps=2)
    async with served(fake) as http:
        await call(http, "POST", "/v2/orders", json=order_body("bg"))
        await wait_until(lambda: status_of(fake, "bg") == "filled")


async def test_closed_market_accepts_and_queues_until_open(
    fake: FakeAlpaca, http: aiohttp.ClientSession
) -> None:
    fake.set_clock(is_open=False)
    _, order = await call(http, "POST", "/v2/orders", json=order_body("q1"))
    assert order["status"] == "accepted"
    fake.step()
    assert status_of(fake, "q1") == "accepted"
    fake.open_market()
    assert status_of(fake, "q1") == "new"
    fake.step()
    assert status_of(fake, "q1") == "filled"


async def test_close_market_expires_open_day_orders_keeping_the_filled_part() -> None:
    fake = FakeAlpaca(step_s=SLOW, fill_steps=2)
    async with served(fake) as http:
        await call(http, "POST", "/v2/orders", json=order_body("half"))
        fake.step()
        fake.script("MSFT", "never_fill")
        await call(http, "POST", "/v2/orders", json=order_body("none", symbol="MSFT"))
        fake.close_market()
        half, none = fake.order_by_client_id("half"), fake.order_by_client_id("none")
        assert half is not None and none is not None
        assert (half["status"], half["filled_qty"]) == ("expired", "5")
        assert (none["status"], none["filled_qty"]) == ("expired", "0")
        assert UTC_NS.match(half["expired_at"])
        _, clock = await call(http, "GET", "/v2/clock")
        assert clock["is_open"] is False


@pytest.mark.parametrize(
    "case",
    [
        ("partial_then_cancel", "7", "3", "canceled"),
        ("partial_then_cancel", "0.5", "0.25", "canceled"),
        ("partial_then_expire", "10", "5", "expired"),
    ],
)
async def test_partial_plans_fill_half_then_end(
    fake: FakeAlpaca, http: aiohttp.ClientSession, case: tuple[str, str, str, str]
) -> None:
    plan, qty, filled, end = case
    fake.script("AAPL", plan)
    await call(http, "POST", "/v2/orders", json=order_body("p", qty=qty))
    fake.step()
    order = fake.order_by_client_id("p")
    assert order is not None and (order["status"], order["filled_qty"]) == (
        "partially_filled",
        filled,
    )
    fake.step()
    order = fake.order_by_client_id("p")
    assert order is not None and (order["status"], order["filled_qty"]) == (end, filled)
    assert order["filled_avg_price"] == "100"
    assert fake.signed_filled("AAPL") == Decimal(filled)


async def test_reject_later_answers_accepted_then_rejects(
    fake: FakeAlpaca, http: aiohttp.ClientSession
) -> None:
    fake.script("AAPL", "reject_later")
    status, order = await call(http, "POST", "/v2/orders", json=order_body("r"))
    assert (status, order["status"]) == (200, "accepted")
    fake.step()
    _, now = await call(http, "GET", "/v2/orders:by_client_order_id?client_order_id=r")
    assert (now["status"], now["filled_qty"]) == ("rejected", "0")
    assert UTC_NS.match(now["failed_at"])


async def test_refusing_plans_create_nothing(fake: FakeAlpaca, http: aiohttp.ClientSession) -> None:
    fake.script("AAPL", "reject_now")
    assert await call(http, "POST", "/v2/orders", json=order_body("n")) == (
        422,
        {"code": 42210000, "message": 'asset "AAPL" is not tradable'},
    )
    fake.script("AAPL", "insufficient_buying_power")
    status, body = await call(http, "POST", "/v2/orders", json=order_body("n"))
    assert status == 403
    assert body == {
        "code": 40310000,
        "message": "insufficient buying power",
        "buying_power": "1000000",
        "cost_basis": "1000",
    }
    assert fake.orders() == []
    assert fake.post_attempts("n") == 2


async def test_replace_plan_hands_over_to_a_new_order(
    fake: FakeAlpaca, http: aiohttp.ClientSession
) -> None:
    fake.script("AAPL", "replace")
    _, first = await call(http, "POST", "/v2/orders", json=order_body("x"))
    fake.step()
    old = fake.order_by_client_id("x")
    new = fake.order_by_client_id("x-r")
    assert old is not None and new is not None
    assert (old["status"], old["replaced_by"], new["replaces"]) == (
        "replaced",
        new["id"],
        old["id"],
    )
    assert new["id"] != first["id"] and UTC_NS.match(old["replaced_at"])
    fake.step()
    assert status_of(fake, "x-r") == "filled"
    assert fake.signed_filled("AAPL") == 10


async def test_duplicate_client_order_id_is_refused_forever(
    fake: FakeAlpaca, http: aiohttp.ClientSession
) -> None:
    duplicate = (422, {"code": 40010001, "message": "client_order_id must be unique"})
    assert (await call(http, "POST", "/v2/orders", json=order_body("d")))[0] == 200
    assert await call(http, "POST", "/v2/orders", json=order_body("d")) == duplicate
    fake.step()
    assert status_of(fake, "d") == "filled"
    assert await call(http, "POST", "/v2/orders", json=order_body("d", symbol="MSFT")) == duplicate
    _, other = await call(http, "POST", "/v2/orders", json=order_body("e"))
    assert (await call(http, "DELETE", f"/v2/orders/{other['id']}"))[0] == 204
    assert await call(http, "POST", "/v2/orders", json=order_body("e")) == duplicate
    assert [o["client_order_id"] for o in fake.orders()] == ["d", "e"]
    assert (fake.post_attempts("d"), fake.post_attempts("e"), fake.post_attempts("zz")) == (3, 2, 0)


async def test_missing_client_order_id_gets_a_uuid(http: aiohttp.ClientSession) -> None:
    body = order_body("")
    del body["client_order_id"]
    _, order = await call(http, "POST", "/v2/orders", json=body)
    assert uuid.UUID(order["client_order_id"])


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"symbol": None}, 422, "symbol is required"),
        ({"qty": None}, 422, "qty is required"),
        ({"qty": "abc"}, 422, "invalid qty"),
        ({"qty": "0"}, 422, "qty must be > 0"),
        ({"qty": "0.0000000001"}, 422, "qty must have at most 9 decimal places"),
        ({"side": "hold"}, 422, "invalid side"),
        ({"type": None}, 422, "type is required"),
        ({"time_in_force": None}, 422, "time_in_force is required"),
        ({"type": "limit"}, 422, "limit_price is required"),
        (
            {"client_order_id": "x" * 129},
            422,
            "client_order_id must be no more than 128 characters",
        ),
        ({"notional": "5"}, 400, "qty and notional are mutually exclusive"),
    ],
)
async def test_bad_fields_are_named(
    fake: FakeAlpaca,
    http: aiohttp.ClientSession,
    change: dict[str, object],
    status: int,
    message: str,
) -> None:
    body = {k: v for k, v in {**order_body("v"), **change}.items() if v is not None}
    assert await call(http, "POST", "/v2/orders", json=body) == (
        status,
        {"code": 40010001, "message": message},
    )
    assert fake.orders() == []


async def test_malformed_json_is_400(http: aiohttp.ClientSession) -> None:
    assert await call(http, "POST", "/v2/orders", data=b"{not json") == (
        400,
        {"code": 40010000, "message": "request body format is invalid"},
    )


async def test_fractional_rules(fake: FakeAlpaca, http: aiohttp.ClientSession) -> None:
    fake.set_asset("WHOLE", fractionable=False)
    refusals = [
        (order_body("f1", symbol="WHOLE", qty="0.5"), "requested asset is not fractionable"),
        (order_body("f2", qty="0.5", time_in_force="gtc"), "fractional orders must be DAY orders"),
        (order_body("f3", qty="0.5", side="sell"), "fractional orders are not allowed to short"),
    ]
    for body, message in refusals:
        assert await call(http, "POST", "/v2/orders", json=body) == (
            422,
            {"code": 42210000, "message": message},
        )
    fake.set_position("AAPL", Decimal("0.75"))
    status, order = await call(
        http, "POST", "/v2/orders", json=order_body("f4", qty="0.5", side="sell")
    )
    assert (status, order["qty"], order["position_intent"]) == (200, "0.5", "sell_to_close")


async def test_selling_beyond_the_position_of_an_unshortable_asset(
    fake: FakeAlpaca, http: aiohttp.ClientSession
) -> None:
    fake.set_asset("HARD", shortable=False)
    fake.set_position("HARD", Decimal(5))
    _, held = await call(http, "POST", "/v2/orders", json=order_body("s1", "HARD", "2", "sell"))
    status, body = await call(
        http, "POST", "/v2/orders", json=order_body("s2", "HARD", "4", "sell")
    )
    assert status == 403
    assert body == {
        "code": 40310000,
        "message": "insufficient qty available for order (requested: 4, available: 3)",
        "available": "3",
        "existing_qty": "5",
        "held_for_orders": "2",
        "related_orders": [held["id"]],
        "symbol": "HARD",
    }
    status, short = await call(
        http, "POST", "/v2/orders", json=order_body("s3", "AAPL", "4", "sell")
    )
    assert (status, short["position_intent"]) == (200, "sell_to_open")
    fake.step()
    _, positions = await call(http, "GET", "/v2/positions")
    assert {p["symbol"]: (p["qty"], p["side"]) for p in positions} == {
        "AAPL": ("4", "short"),
        "HARD": ("3", "long"),
    }


async def test_buying_power_limits_buys_and_open_buys_hold_it(
    fake: FakeAlpaca, http: aiohttp.ClientSession
) -> None:
    fake.set_account(buying_power=Decimal(1500))
    assert (await call(http, "POST", "/v2/orders", json=order_body("b1")))[0] == 200
    status, body = await call(http, "POST", "/v2/orders", json=order_body("b2"))
    assert (status, body["buying_power"], body["cost_basis"]) == (403, "500", "1000")
    _, account = await call(http, "GET", "/v2/account")
    assert (account["buying_power"], account["cash"]) == ("500", "1500")


async def test_unknown_symbols(fake: FakeAlpaca, http: aiohttp.ClientSession) -> None:
    fake.set_asset("GONE", known=False)
    assert await call(http, "POST", "/v2/orders", json=order_body("u", symbol="GONE")) == (
        422,
        {"code": 42210000, "message": 'asset "GONE" not found'},
    )
    assert await call(http, "GET", "/v2/assets/GONE") == (
        404,
        {"code": 40410000, "message": "asset not found for GONE"},
    )
    fake.set_asset("FRAC", fractionable=False, shortable=False)
    status, asset = await call(http, "GET", "/v2/assets/FRAC")
    assert status == 200
    assert (asset["class"], asset["status"], asset["tradable"]) == ("us_equity", "active", True)
    assert (asset["fractionable"], asset["shortable"], asset["symbol"]) == (False, False, "FRAC")
    assert {"id", "exchange", "name", "marginable", "easy_to_borrow"} <= set(asset)


async def test_average_price_weights_each_step() -> None:
    fake = FakeAlpaca(step_s=SLOW, fill_steps=2)
    async with served(fake) as http:
        _, order = await call(http, "POST", "/v2/orders", json=order_body("w", qty="3"))
        fake.step()  # 1 @ 100
        fake.set_price("AAPL", Decimal("110.5"))
        fake.step()  # 2 @ 110.5
        _, now = await call(http, "GET", f"/v2/orders/{order['id']}")
        assert (now["filled_qty"], now["filled_avg_price"]) == ("3", "107")
        _, positions = await call(http, "GET", "/v2/positions")
        assert positions[0]["avg_entry_price"] == "107"


async def test_no_shorting_account_refuses_a_sell_beyond_the_position(
    fake: FakeAlpaca, http: aiohttp.ClientSession
) -> None:
    fake.set_account(shorting_enabled=False)
    status, body = await call(http, "POST", "/v2/orders", json=order_body("ns", side="sell"))
    assert (status, body["code"], body["available"]) == (403, 40310000, "0")
    assert fake.orders() == []


async def test_unknown_endpoints_and_methods(http: aiohttp.ClientSession) -> None:
    assert await call(http, "GET", "/v2/watchlists") == (
        404,
        {"code": 40410000, "message": "endpoint not found"},
    )
    assert (await call(http, "PUT", "/v2/orders"))[0] == 405
