"""The engine hedging at Alpaca (SPEC §4, §5): the real client against the fake over loopback
HTTP — partial fills, rejections, account-wide refusals, the market clock, a long backlog."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pytest
from engine_kit import AtAlpaca, Enqueue, Fills, OpenEngine, rows

from bot.broker.alpaca import AlpacaBroker
from bot.core.blocking import ALL, Reason
from bot.devnet.fake_alpaca import FakeAlpaca
from bot.engine import Engine
from bot.engine.broker_watch import BrokerWatch, WatchOptions
from bot.errors import ConfigError
from bot.store import queries

KEY, SECRET = AtAlpaca.KEY, AtAlpaca.SECRET


async def settle(engine: Engine, fake: FakeAlpaca, *, up_to_block: int) -> None:
    """Drain passes until nothing is in flight, letting the fake fill one step per pass."""
    deadline = time.monotonic() + 20
    while True:
        await engine.drain(up_to_block=up_to_block)
        if not engine.accumulator.in_flight_executions():
            return
        assert time.monotonic() < deadline, engine.accumulator.in_flight_executions()
        fake.step()


def signed_hedged(db_path: Path, ticker: str) -> Decimal:
    report = queries.status(db_path)
    (position,) = [p for p in report["positions"] if p["ticker"] == ticker]
    return Decimal(position["hedged_shares"])


async def test_one_order_per_ticker_for_a_backlog_and_the_fake_agrees(
    open_engine: OpenEngine,
    enqueue: Enqueue,
    fills: Fills,
    at: AtAlpaca,
    db_path: Path,
) -> None:
    fake, alpaca = at.fake, at.broker
    logs = [fills.sell("0.75", "200", ticker="AAPL" if i % 3 else "NVDA") for i in range(1000)]
    engine = await open_engine(broker=alpaca, batch_size=128, poll_interval_s=0.0)
    await enqueue(logs)
    await settle(engine, fake, up_to_block=fills.block)
    # 666 sells of 0.75 AAPL = 499.5, 334 of NVDA = 250.5: one BUY each
    assert sorted((o["symbol"], o["side"], o["qty"]) for o in fake.orders()) == [
        ("AAPL", "buy", "499"),
        ("NVDA", "buy", "250"),
    ]
    for ticker in ("AAPL", "NVDA"):
        assert fake.signed_filled(ticker) == signed_hedged(db_path, ticker)
    assert rows(db_path, "SELECT status, filled_shares FROM executions ORDER BY id") == [
        ("FILLED", "250"),
        ("FILLED", "499"),
    ] or rows(db_path, "SELECT status, filled_shares FROM executions ORDER BY id") == [
        ("FILLED", "499"),
        ("FILLED", "250"),
    ]


async def test_partial_fill_then_cancel_returns_the_rest_which_is_hedged_again(
    open_engine: OpenEngine,
    enqueue: Enqueue,
    fills: Fills,
    at: AtAlpaca,
    db_path: Path,
) -> None:
    fake, alpaca = at.fake, at.broker
    fake.script("AAPL", "partial_then_cancel")
    engine = await open_engine(broker=alpaca, poll_interval_s=0.0)
    await enqueue([fills.sell("2.5", "200"), fills.sell("2", "200")])
    await engine.drain(up_to_block=2)  # BUY 4 placed
    assert [(o["qty"], o["status"]) for o in fake.orders()] == [("4", "new")]
    fake.script("AAPL", "fill")  # the next order fills
    await settle(engine, fake, up_to_block=2)
    # half of 4 filled, then canceled: 2 return and go out again as a new order
    assert [(o["qty"], o["filled_qty"], o["status"]) for o in fake.orders()] == [
        ("4", "2", "canceled"),
        ("2", "2", "filled"),
    ]
    assert rows(db_path, "SELECT shares, filled_shares, status FROM executions ORDER BY id") == [
        ("4", "2", "FILLED"),
        ("2", "2", "FILLED"),
    ]
    assert fake.signed_filled("AAPL") == signed_hedged(db_path, "AAPL") == Decimal(4)
    links = rows(
        db_path, "SELECT execution_id, SUM(CAST(shares AS REAL)) FROM execution_lots GROUP BY 1"
    )
    assert [(e, int(s)) for e, s in links] == [(1, 2), (2, 2)]


async def test_rejections_that_arrive_later_park_the_ticker_after_max_rejections(
    open_engine: OpenEngine,
    enqueue: Enqueue,
    fills: Fills,
    at: AtAlpaca,
    db_path: Path,
) -> None:
    fake, alpaca = at.fake, at.broker
    fake.script("AAPL", "reject_later")
    engine = await open_engine(broker=alpaca, poll_interval_s=0.0, max_rejections=3)
    await enqueue([fills.sell("1.5", "200")])
    for _ in range(3):
        await settle(engine, fake, up_to_block=1)
    assert [(o["qty"], o["status"]) for o in fake.orders()] == [("1", "rejected")] * 3
    assert (
        rows(db_path, "SELECT status, reason FROM executions")
        == [("FAILED", "broker status rejected: nothing filled")] * 3
    )
    report = queries.status(db_path)
    assert report["positions"][0]["parked"] is True
    await settle(engine, fake, up_to_block=1)
    assert len(fake.orders()) == 3  # parked: no fourth order


async def test_insufficient_buying_power_blocks_the_account_and_never_parks(
    open_engine: OpenEngine,
    enqueue: Enqueue,
    fills: Fills,
    at: AtAlpaca,
    db_path: Path,
) -> None:
    fake, alpaca = at.fake, at.broker
    fake.script("AAPL", "insufficient_buying_power")
    engine = await open_engine(
        broker=alpaca, poll_interval_s=0.0, max_rejections=1, rejection_backoff_s=3600.0
    )
    await enqueue([fills.sell("3", "200"), fills.buy("2", "200", ticker="NVDA")])
    await engine.drain(up_to_block=2)
    # both were decided at the pass's end; AAPL's refusal is account-wide, NVDA's order went out
    ((status, reason),) = rows(db_path, "SELECT status, reason FROM executions WHERE id = 1")
    assert (status, "insufficient buying power" in reason) == ("FAILED", True)
    assert rows(db_path, "SELECT ticker, status FROM executions WHERE id = 2") == [
        ("NVDA", "SUBMITTED")
    ]
    assert engine.blocks.has(ALL, Reason.ACCOUNT_REFUSED)
    assert queries.status(db_path)["positions"][0]["parked"] is False  # never the ticker's fault
    placed = len(fake.orders())
    await engine.drain(up_to_block=2)
    assert len(fake.orders()) == placed  # waits out the backoff: no new attempt


async def test_market_closed_books_fills_without_orders_then_one_per_ticker_at_the_open(
    open_engine: OpenEngine,
    enqueue: Enqueue,
    fills: Fills,
    at: AtAlpaca,
    db_path: Path,
) -> None:
    fake, alpaca = at.fake, at.broker
    engine = await open_engine(broker=alpaca, poll_interval_s=0.0)
    watch = BrokerWatch(engine, alpaca, WatchOptions(clock_every_s=0.0, account_every_s=0.0))
    fake.set_clock(is_open=False)
    await watch.start()
    for _ in range(5):  # five passes while closed
        await enqueue([fills.sell("0.9", "200"), fills.buy("0.6", "100", ticker="NVDA")])
        await watch.tick()
        await engine.drain(up_to_block=fills.block)
    assert fake.orders() == []
    report = queries.status(db_path)
    assert report["market_open"] is False
    ((blocked),) = report["hedging_blocked"]
    assert blocked["ticker"] == "*" and blocked["reason"].startswith("market closed")
    assert [p["onchain_net_shares"] for p in report["positions"]] == ["-4.5", "3"]
    fake.open_market()
    await watch.tick()
    await settle(engine, fake, up_to_block=fills.block)
    assert sorted((o["symbol"], o["side"], o["qty"]) for o in fake.orders()) == [
        ("AAPL", "buy", "4"),
        ("NVDA", "sell", "3"),
    ]
    assert queries.status(db_path)["market_open"] is True


async def test_refused_keys_at_start_are_a_config_error_naming_the_keys(
    open_engine: OpenEngine, at: AtAlpaca
) -> None:
    broker = AlpacaBroker(base_url=at.fake.base_url, key_id="wrong-key", secret="wrong-secret")
    try:
        engine = await open_engine(broker=broker)
        with pytest.raises(ConfigError) as caught:
            await BrokerWatch(engine, broker, WatchOptions()).start()
    finally:
        await broker.aclose()
    message = str(caught.value)
    assert "broker.alpaca.api_key_id" in message and "broker.alpaca.api_secret" in message
    assert "wrong-key" not in message and "wrong-secret" not in message


async def test_the_database_refuses_another_account(open_engine: OpenEngine, at: AtAlpaca) -> None:
    alpaca = at.broker
    engine = await open_engine(broker=alpaca)
    await BrokerWatch(engine, alpaca, WatchOptions()).start()
    other = FakeAlpaca(key_id=KEY, secret=SECRET, account_id="another-account")
    await other.start()
    broker = AlpacaBroker(base_url=other.base_url, key_id=KEY, secret=SECRET)
    try:
        with pytest.raises(ConfigError, match="never moves to another broker or account"):
            await BrokerWatch(engine, broker, WatchOptions()).start()
    finally:
        await broker.aclose()
        await other.stop()


async def test_a_new_database_facing_held_positions_waits_for_bot_baseline(
    open_engine: OpenEngine,
    enqueue: Enqueue,
    fills: Fills,
    at: AtAlpaca,
    db_path: Path,
) -> None:
    fake, alpaca = at.fake, at.broker
    from bot.store import admin

    fake.set_position("AAPL", Decimal(3))  # an earlier database's hedge of 3 on-chain sells
    fake.add_foreign_order("bot-0123456789abcdef-7", "NVDA", "buy", Decimal(2))
    engine = await open_engine(broker=alpaca, poll_interval_s=0.0)
    watch = BrokerWatch(engine, alpaca, WatchOptions(clock_every_s=0.0))
    await watch.start()
    await enqueue([fills.sell("3.2", "200"), fills.sell("2.1", "200", ticker="NVDA")])
    await watch.tick()
    await engine.drain(up_to_block=2)
    assert fake.orders()[-1]["client_order_id"] == "bot-0123456789abcdef-7"  # nothing new
    reasons = {b["ticker"]: b["reason"] for b in queries.status(db_path)["hedging_blocked"]}
    assert "awaiting bot baseline" in reasons["AAPL"] and "awaiting bot baseline" in reasons["NVDA"]

    assert admin.baseline(db_path, "AAPL", as_hedged=True).changed == 1
    assert admin.baseline(db_path, "NVDA", as_hedged=False).changed == 1
    await watch.tick()
    await settle(engine, fake, up_to_block=2)
    # AAPL: the 3 held are this bot's: booked as a baseline execution, -0.2 left, no order;
    # NVDA: the 2 held are outside this bot: -2.1 is hedged with a BUY of 2
    mine = [
        o
        for o in fake.orders()
        if o["client_order_id"].startswith(f"bot-{engine.meta.instance_id}")
    ]
    assert [(o["symbol"], o["side"], o["qty"]) for o in mine] == [("NVDA", "buy", "2")]
    assert rows(db_path, "SELECT ticker, kind, direction, shares, status FROM executions") == [
        ("AAPL", "baseline", "BUY", "3", "FILLED"),
        ("NVDA", "hedge", "BUY", "2", "FILLED"),
    ]
