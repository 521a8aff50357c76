"""The drain end to end through a real database with the dry-run broker (SPEC §4 examples)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from engine_kit import (
    OTHER_OWNER,
    OWNER,
    SERVED,
    Enqueue,
    FakeChain,
    Fills,
    OpenEngine,
    dump,
    fast_options,
    rows,
)

from bot.broker.dry_run import DryRunBroker
from bot.core.tokens import DEFAULT_RULES
from bot.devnet.synthetic import hash_of
from bot.engine import Engine
from bot.store import queries, queue
from bot.store.connection import connect


async def test_worked_example_sells_03_05_04_give_one_buy_of_1(
    open_engine: OpenEngine, enqueue: Enqueue, fills: Fills, db_path: Path
) -> None:
    engine = await open_engine()
    iid = engine.meta.instance_id
    await enqueue([fills.sell("0.3", "200"), fills.sell("0.5", "210"), fills.sell("0.4", "220")])
    await engine.start()
    stats = await engine.drain(up_to_block=3)
    assert (stats.events, stats.ours, stats.trades, stats.executions, stats.failed) == (
        3,
        3,
        3,
        1,
        0,
    )

    tables = dump(db_path)
    assert [t[6:] for t in tables["trades"]] == [
        ("AAPL", "0.3", "SELL", "200", "60"),
        ("AAPL", "0.5", "SELL", "210", "105"),
        ("AAPL", "0.4", "SELL", "220", "88"),
    ]
    assert tables["executions"] == [
        (1, "AAPL", "BUY", "1", f"bot-{iid}-1", "FILLED", f"dry-bot-{iid}-1", "1", "209", None)
    ]
    # (0.3*200 + 0.5*210 + 0.2*220) / 1 = 209: the link-weighted mean is the dry-run fill price
    assert tables["links"] == [(1, 1, "0.3", 0), (1, 2, "0.5", 1), (1, 3, "0.2", 2)]
    assert tables["lots"] == [
        (1, "AAPL", "SELL", "0.3", "200", "0", "0.3", 0),
        (2, "AAPL", "SELL", "0.5", "210", "0", "0.5", 0),
        (3, "AAPL", "SELL", "0.4", "220", "0", "0.2", 1),
    ]
    assert tables["positions"] == [("AAPL", "-1.2", "1", "0", 0, 0)]
    assert tables["events"] == [
        (1, "processed", 1, None, 0),
        (2, "processed", 1, None, 0),
        (3, "processed", 1, None, 0),
    ]

    status = queries.status(db_path)
    assert status["idle"] is True
    assert status["queue"] == {
        "pending": 0,
        "processed": 3,
        "removed": 0,
        "failed": 0,
        "skipped": 0,
    }
    assert status["positions"] == [
        {
            "ticker": "AAPL",
            "onchain_net_shares": "-1.2",
            "hedged_shares": "1",
            "in_flight_shares": "0",
            "unhedged_shares": "-0.2",
            "parked": False,
            "consecutive_rejections": 0,
            "broker_position_shares": None,  # the dry-run broker holds nothing
            "drift_shares": None,
        }
    ]
    assert [
        {k: e[k] for k in ("id", "ticker", "direction", "shares", "filled_shares", "status")}
        for e in status["executions"]
    ] == [
        {
            "id": 1,
            "ticker": "AAPL",
            "direction": "BUY",
            "shares": "1",
            "filled_shares": "1",
            "status": "FILLED",
        }
    ]
    assert status["paused_reasons"] == []
    assert [t["shares"] for t in queries.trades(db_path)] == ["0.3", "0.5", "0.4"]
    assert [e["avg_price"] for e in queries.executions(db_path)] == ["209"]


async def test_netting_example_links_the_oldest_open_lots(
    open_engine: OpenEngine, enqueue: Enqueue, fills: Fills, db_path: Path
) -> None:
    engine = await open_engine()
    await enqueue(
        [
            fills.sell("0.3", "200"),
            fills.buy("0.2", "205"),
            fills.sell("0.5", "210"),
            fills.sell("0.4", "220"),
        ]
    )
    await engine.start()
    await engine.drain(up_to_block=4)
    tables = dump(db_path)
    assert [(e[2], e[3], e[5], e[7], e[8]) for e in tables["executions"]] == [
        ("BUY", "1", "FILLED", "1", "213")  # (0.1*200 + 0.5*210 + 0.4*220) / 1
    ]
    assert tables["links"] == [(1, 1, "0.1", 0), (1, 3, "0.5", 1), (1, 4, "0.4", 2)]
    assert tables["lots"] == [
        (1, "AAPL", "SELL", "0.3", "200", "0.2", "0.1", 0),  # the BUY closed 0.2 of it
        (3, "AAPL", "SELL", "0.5", "210", "0", "0.5", 0),
        (4, "AAPL", "SELL", "0.4", "220", "0", "0.4", 0),
    ]
    assert tables["positions"] == [("AAPL", "-1", "1", "0", 0, 0)]


async def test_processing_the_same_events_twice_changes_nothing(
    open_engine: OpenEngine, enqueue: Enqueue, fills: Fills, db_path: Path
) -> None:
    logs = [fills.sell("0.3", "200"), fills.sell("0.5", "210"), fills.sell("0.4", "220")]
    engine = await open_engine()
    await enqueue(logs)
    await engine.start()
    await engine.drain(up_to_block=3)
    before = dump(db_path)

    assert (await enqueue(logs)).inserted == 0
    assert (await engine.drain(up_to_block=3)).events == 0
    await engine.close()
    restarted = await open_engine()  # a restart: start() and drain again
    await restarted.start()
    assert (await restarted.drain(up_to_block=3)).events == 0
    assert dump(db_path) == before


async def test_the_same_events_give_the_same_hedges_in_another_database(
    open_engine: OpenEngine, enqueue: Enqueue, tmp_path: Path, db_path: Path
) -> None:
    logs = []
    sequence = Fills()
    for i in range(30):
        price = str(100 + i)
        logs.append(sequence.sell("0.37", price) if i % 3 else sequence.buy("0.11", price))
    engine = await open_engine()
    await enqueue(logs)
    await engine.drain(up_to_block=30)
    first = dump(db_path)

    other_path = tmp_path / "other.db"
    other = await Engine.open(
        other_path,
        SERVED,
        broker=DryRunBroker(),
        chain=FakeChain(),
        rules=DEFAULT_RULES,
        options=fast_options(batch_size=7),  # batching must not change the outcome
    )
    conn = await connect(other_path)
    await queue.enqueue(conn, logs)
    await conn.close()
    await other.drain(up_to_block=30)
    await other.close()
    second = dump(other_path)

    def strip_ids(table: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
        return [(e[0], e[1], e[2], e[3], e[5], e[7], e[8]) for e in table]

    # net -6.3 (20 sells of 0.37, 10 buys of 0.11) in one pass: one BUY of 6, not a string of
    # orders, whatever the batch size
    assert [(e[2], e[3], e[5]) for e in first["executions"]] == [("BUY", "6", "FILLED")]
    assert strip_ids(first["executions"]) == strip_ids(second["executions"])
    for table in ("trades", "lots", "positions", "links"):
        assert first[table] == second[table], table


async def test_events_above_the_bound_wait(
    open_engine: OpenEngine, enqueue: Enqueue, fills: Fills, db_path: Path
) -> None:
    engine = await open_engine()
    await enqueue([fills.sell("0.6", "200"), fills.sell("0.6", "200")])
    assert (await engine.drain(up_to_block=1)).events == 1
    assert rows(db_path, "SELECT COUNT(*) FROM executions") == [(0,)]
    assert (await engine.drain(up_to_block=2)).executions == 1


async def test_not_ours_and_non_equity_pairs(
    open_engine: OpenEngine, enqueue: Enqueue, fills: Fills, db_path: Path
) -> None:
    from engine_kit import OTHER_OWNER

    from bot.devnet.synthetic import OWNER, USDC, WETH, At, make_io, make_order, take_order_log

    engine = await open_engine()
    weth_pair = take_order_log(
        make_order(OWNER, [make_io(USDC)], [make_io(WETH)]),
        input=10**18,
        output=3_000_000,
        at=At(block_number=50),
    )
    await enqueue([fills.sell("5", "200", owner=OTHER_OWNER), weth_pair])
    stats = await engine.drain(up_to_block=100)
    # the other owner's row was stored processed: the drain never sees it
    assert (stats.events, stats.ours, stats.trades) == (1, 1, 0)
    assert rows(db_path, "SELECT status, is_ours FROM events ORDER BY id") == [
        ("processed", 0),
        ("processed", 1),
    ]
    (skipped,) = dump(db_path)["skipped"]
    assert skipped[:3] == (hash_of("tx", 50, 0), 0, "take")
    assert "not an equity/stablecoin pair" in skipped[3]


async def test_a_backlog_of_1000_fills_hedges_with_one_order_per_ticker(
    open_engine: OpenEngine, enqueue: Enqueue, fills: Fills, db_path: Path
) -> None:
    logs = []
    for i in range(1000):
        ticker = "AAPL" if i % 2 else "NVDA"
        if i % 5 == 0:  # opposite fills in between: the net is what counts
            logs.append(fills.buy("0.25", "150", ticker=ticker))
        else:
            logs.append(fills.sell("0.375", "150", ticker=ticker))
    engine = await open_engine(batch_size=64)  # many batches, one pass
    await enqueue(logs)
    stats = await engine.drain(up_to_block=fills.block)
    assert (stats.events, stats.trades, stats.executions) == (1000, 1000, 2)
    # per ticker: 100 buys of 0.25 and 400 sells of 0.375 = -125 → one broker BUY of 125
    assert rows(db_path, "SELECT ticker, direction, shares, status FROM executions") == [
        ("AAPL", "BUY", "125", "FILLED"),
        ("NVDA", "BUY", "125", "FILLED"),
    ]
    assert rows(db_path, "SELECT ticker, onchain_net, hedged, in_flight FROM positions") == [
        ("AAPL", "-125", "125", "0"),
        ("NVDA", "-125", "125", "0"),
    ]


async def test_each_pass_hedges_its_net_and_carries_the_remainder(
    open_engine: OpenEngine, enqueue: Enqueue, fills: Fills, db_path: Path
) -> None:
    engine = await open_engine()
    await enqueue([fills.sell("0.8", "200"), fills.sell("0.7", "200"), fills.buy("2.9", "201")])
    await engine.drain(up_to_block=2)  # -1.5: BUY 1, -0.5 left
    await engine.drain(up_to_block=3)  # -0.5 + 2.9 = 2.4: SELL 2, 0.4 left
    assert rows(db_path, "SELECT direction, shares FROM executions") == [
        ("BUY", "1"),
        ("SELL", "2"),
    ]
    assert rows(db_path, "SELECT onchain_net, hedged FROM positions") == [("1.4", "-1")]


async def test_an_event_found_below_the_processed_frontier_is_booked_late_and_reported(
    open_engine: OpenEngine, enqueue: Enqueue, fills: Fills, db_path: Path
) -> None:
    logs = [fills.sell("0.5", "200") for _ in range(6)]
    missed = logs.pop(2)  # block 3: a provider once answered [] for it
    engine = await open_engine()
    reported: list[tuple[int, list[str]]] = []
    engine.on_late = lambda item, tickers: reported.append((item.event.raw.block_number, tickers))
    await enqueue(logs)
    await engine.drain(up_to_block=6)
    assert reported == []
    await enqueue([missed])  # a backfill job re-scanned the range and found it
    await engine.drain(up_to_block=6)
    assert reported == [(3, ["AAPL"])]
    assert rows(db_path, "SELECT block_number, late FROM trades ORDER BY id") == [
        (1, 0), (2, 0), (4, 0), (5, 0), (6, 0), (3, 1),
    ]  # fmt: skip
    assert rows(db_path, "SELECT onchain_net FROM positions") == [("-3",)]  # still exact


async def test_rows_of_other_owners_are_stored_processed_and_never_read_back(
    open_engine: OpenEngine,
    enqueue: Enqueue,
    fills: Fills,
    db_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logs = [
        fills.sell("0.5", "200"),
        fills.sell("7", "100", owner=OTHER_OWNER),
        fills.sell("0.25", "200"),
        fills.buy("9", "100", owner=OTHER_OWNER),
        fills.sell("0.25", "200"),
    ]
    engine = await open_engine(batch_size=1)
    await enqueue(logs)
    ours = OWNER.lower()
    assert rows(db_path, f"SELECT id, status, is_ours, owners = '{ours}' FROM events") == [
        (1, "pending", None, 1), (2, "processed", 0, 0), (3, "pending", None, 1),
        (4, "processed", 0, 0), (5, "pending", None, 1),
    ]  # fmt: skip
    # rows stored before owners were recorded (migration 0007): read and checked as before
    with sqlite3.connect(db_path) as raw:
        raw.execute(
            "UPDATE events SET owners = NULL, status = 'pending', is_ours = NULL WHERE id IN (3, 4)"
        )
    read: list[int] = []
    real = queue.pending_events

    async def spy(conn: aiosqlite.Connection, **kw: Any) -> list[queue.QueuedEvent]:
        found = await real(conn, **kw)
        read.extend(event.id for event in found)
        return found

    monkeypatch.setattr(queue, "pending_events", spy)
    stats = await engine.drain(up_to_block=5)
    assert sorted(set(read)) == [1, 3, 4, 5]  # row 2: never read back
    assert (stats.events, stats.ours, stats.trades, stats.executions) == (4, 3, 3, 1)
    assert rows(db_path, "SELECT id, status, is_ours FROM events ORDER BY id") == [
        (1, "processed", 1), (2, "processed", 0), (3, "processed", 1),
        (4, "processed", 0), (5, "processed", 1),
    ]  # fmt: skip
    assert rows(db_path, "SELECT onchain_net, hedged FROM positions") == [("-1", "1")]
