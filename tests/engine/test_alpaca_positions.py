"""Fractional hedges, rejection backoff and reconciliation at (fake) Alpaca (SPEC §4, §5)."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

from engine_kit import AtAlpaca, Enqueue, Fills, OpenEngine, rows

from bot.broker.alpaca import AlpacaBroker
from bot.core.blocking import Reason
from bot.devnet.fake_alpaca import FakeAlpaca
from bot.engine import Engine
from bot.engine.broker_watch import BrokerWatch, WatchOptions
from bot.store import admin, queries

KEY, SECRET = AtAlpaca.KEY, AtAlpaca.SECRET


async def settle(engine: Engine, fake: FakeAlpaca, watch: BrokerWatch, block: int) -> None:
    deadline = time.monotonic() + 20
    while True:
        await watch.tick()
        await engine.drain(up_to_block=block)
        if not engine.accumulator.in_flight_executions():
            return
        assert time.monotonic() < deadline
        fake.step()


async def test_fractional_hedges_where_the_asset_allows_and_whole_shares_elsewhere(
    open_engine: OpenEngine, enqueue: Enqueue, fills: Fills, at: AtAlpaca, db_path: Path
) -> None:
    fake, broker = at.fake, at.broker
    fake.set_asset("NVDA", fractionable=False)
    engine = await open_engine(
        broker=broker, poll_interval_s=0.0, fractional=True, threshold_shares=Decimal("0.1")
    )
    watch = BrokerWatch(engine, broker, WatchOptions(clock_every_s=0.0))
    await watch.start()
    await enqueue([fills.sell("0.35", "200"), fills.sell("1.75", "100", ticker="NVDA")])
    await settle(engine, fake, watch, fills.block)
    # AAPL is fractionable: BUY 0.35 exactly; NVDA is not: threshold 1, whole shares
    assert sorted((o["symbol"], o["side"], o["qty"]) for o in fake.orders()) == [
        ("AAPL", "buy", "0.35"),
        ("NVDA", "buy", "1"),
    ]
    # a fractional SELL above the long position would be a fractional short: it stays whole
    await enqueue([fills.buy("1.6", "200")])
    await settle(engine, fake, watch, fills.block)
    assert [(o["symbol"], o["side"], o["qty"]) for o in fake.orders()][-1] == ("AAPL", "sell", "1")


async def test_a_rejected_ticker_waits_out_its_backoff_before_the_next_attempt(
    open_engine: OpenEngine, enqueue: Enqueue, fills: Fills, at: AtAlpaca, db_path: Path
) -> None:
    fake, broker = at.fake, at.broker
    fake.script("AAPL", "reject_now")
    engine = await open_engine(broker=broker, rejection_backoff_s=3600.0, max_rejections=5)
    await enqueue([fills.sell("1.5", "200")])
    await engine.drain(up_to_block=1)
    await engine.drain(up_to_block=1)
    assert fake.post_attempts(f"bot-{engine.meta.instance_id}-1") == 1
    assert rows(db_path, "SELECT COUNT(*) FROM executions") == [(1,)]
    assert engine.blocks.has("AAPL", Reason.REJECTION_BACKOFF)


async def test_reconciliation_measures_drift_and_accept_drift_folds_it_into_the_baseline(
    open_engine: OpenEngine, enqueue: Enqueue, fills: Fills, at: AtAlpaca, db_path: Path
) -> None:
    fake, broker = at.fake, at.broker
    engine = await open_engine(broker=broker, poll_interval_s=0.0)
    watch = BrokerWatch(engine, broker, WatchOptions(clock_every_s=0.0, reconcile_every_s=0.0))
    await watch.start()
    await enqueue([fills.sell("2.2", "200")])
    await settle(engine, fake, watch, fills.block)
    await watch.tick()
    (position,) = queries.status(db_path)["positions"]
    assert (position["broker_position_shares"], position["drift_shares"]) == ("2", "0")

    fake.set_position("AAPL", Decimal("2.5"))  # someone traded 0.5 AAPL on the account
    await watch.tick()
    await watch.tick()
    (position,) = queries.status(db_path)["positions"]
    assert (position["broker_position_shares"], position["drift_shares"]) == ("2.5", "0.5")
    assert len(fake.orders()) == 1  # drift never trades by itself

    assert admin.accept_drift(db_path, "AAPL").changed == 1
    await watch.tick()
    await watch.tick()
    (position,) = queries.status(db_path)["positions"]
    assert position["drift_shares"] == "0"


async def test_a_broker_down_at_start_holds_every_order_until_its_account_is_verified(
    open_engine: OpenEngine, enqueue: Enqueue, fills: Fills, db_path: Path
) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = AlpacaBroker(
        base_url=f"http://127.0.0.1:{port}", key_id=KEY, secret=SECRET, timeout_s=1.0
    )
    later = FakeAlpaca(key_id=KEY, secret=SECRET, step_s=3600.0)
    try:
        engine = await open_engine(broker=client, poll_interval_s=0.0)
        watch = BrokerWatch(engine, client, WatchOptions(clock_every_s=0.0))
        await watch.start()  # nobody answers: not fatal
        await enqueue([fills.sell("2", "200")])
        await watch.tick()
        await engine.drain(up_to_block=1)
        assert rows(db_path, "SELECT COUNT(*) FROM executions") == [(0,)]
        (blocked,) = queries.status(db_path)["hedging_blocked"]
        assert blocked["reason"].startswith("broker account not verified yet")
        await later.start(port=port)
        await settle(engine, later, watch, 1)
        assert [(o["side"], o["qty"]) for o in later.orders()] == [("buy", "2")]
        assert queries.status(db_path)["hedging_blocked"] == []
    finally:
        await client.aclose()
        await later.stop()


async def test_a_replaced_order_is_followed_to_its_replacement_and_booked_once(
    open_engine: OpenEngine, enqueue: Enqueue, fills: Fills, at: AtAlpaca, db_path: Path
) -> None:
    fake, broker = at.fake, at.broker
    fake.script("AAPL", "replace")
    engine = await open_engine(broker=broker, poll_interval_s=0.0)
    watch = BrokerWatch(engine, broker, WatchOptions(clock_every_s=0.0))
    await watch.start()
    await enqueue([fills.sell("3.5", "200")])
    await settle(engine, fake, watch, fills.block)
    first, second = fake.orders()
    assert (first["status"], first["replaced_by"]) == ("replaced", second["id"])
    assert (second["status"], second["filled_qty"]) == ("filled", "3")
    assert rows(db_path, "SELECT status, filled_shares, broker_order_id FROM executions") == [
        ("FILLED", "3", second["id"])
    ]
    assert fake.signed_filled("AAPL") == Decimal(3)
