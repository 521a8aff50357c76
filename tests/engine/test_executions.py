"""Executions against a broker that misbehaves: crashes, unknown outcomes, rejections, parking."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_kit import Enqueue, FakeBroker, Fills, OpenEngine, SimulatedCrash, dump, rows

from bot.store import admin, queries


async def _three_sells(enqueue: Enqueue, fills: Fills) -> None:
    await enqueue([fills.sell("0.3", "200"), fills.sell("0.5", "210"), fills.sell("0.4", "220")])


@pytest.mark.parametrize("crash", ["crash-before", "crash-after"])
async def test_crash_around_the_broker_call_then_restart_places_exactly_one_order(
    crash: str, open_engine: OpenEngine, enqueue: Enqueue, fills: Fills, db_path: Path
) -> None:
    broker = FakeBroker(script=[crash])
    engine = await open_engine(broker=broker)
    await _three_sells(enqueue, fills)
    with pytest.raises(SimulatedCrash):
        await engine.drain(up_to_block=3)
    coid = f"bot-{engine.meta.instance_id}-1"
    # the PENDING row and the event were committed before the broker was called
    assert rows(db_path, "SELECT id, status, client_order_id FROM executions") == [
        (1, "PENDING", coid)
    ]
    assert rows(db_path, "SELECT status FROM events") == [("processed",)] * 3
    assert rows(db_path, "SELECT in_flight FROM positions") == [("1",)]
    await engine.close()

    restarted = await open_engine(broker=broker)  # same broker: it remembers what it got
    await restarted.start()  # resolves the in-flight execution before anything new
    assert broker.placed == [coid]  # exactly one order for this client_order_id
    if crash == "crash-after":
        assert broker.calls == [f"place {coid}", f"lookup {coid}"]
    else:
        assert broker.calls == [f"place {coid}", f"lookup {coid}", f"place {coid}"]
    assert rows(db_path, "SELECT status, filled_shares, avg_price FROM executions") == [
        ("FILLED", "1", "209")
    ]
    assert rows(db_path, "SELECT onchain_net, hedged, in_flight FROM positions") == [
        ("-1.2", "1", "0")
    ]
    assert (await restarted.drain(up_to_block=3)).events == 0
    assert broker.placed == [coid]


async def test_dry_run_pending_after_a_crash_is_placed_again_with_the_same_key(
    open_engine: OpenEngine, enqueue: Enqueue, fills: Fills, db_path: Path
) -> None:
    from bot.broker.dry_run import DryRunBroker

    class CrashOnce(DryRunBroker):
        async def place(self, order):  # type: ignore[no-untyped-def]
            raise SimulatedCrash("died")

    engine = await open_engine(broker=CrashOnce())
    await _three_sells(enqueue, fills)
    with pytest.raises(SimulatedCrash):
        await engine.drain(up_to_block=3)
    await engine.close()
    restarted = await open_engine()  # the dry-run broker: lookup is always None
    await restarted.start()
    iid = restarted.meta.instance_id
    assert dump(db_path)["executions"] == [
        (1, "AAPL", "BUY", "1", f"bot-{iid}-1", "FILLED", f"dry-bot-{iid}-1", "1", "209", None)
    ]


async def test_unknown_outcome_stays_in_flight_then_resolves_without_a_second_order(
    open_engine: OpenEngine, enqueue: Enqueue, fills: Fills, db_path: Path
) -> None:
    broker = FakeBroker(script=["unknown-placed"])
    engine = await open_engine(broker=broker, resolve_base_s=3600.0, resolve_max_s=3600.0)
    await _three_sells(enqueue, fills)
    await engine.drain(up_to_block=3)
    coid = f"bot-{engine.meta.instance_id}-1"
    assert rows(db_path, "SELECT status FROM executions") == [("PENDING",)]
    # more fills: the ticker has an execution in flight, so no second one
    await enqueue([fills.sell("1.5", "230")])
    await engine.drain(up_to_block=4)
    assert rows(db_path, "SELECT id, status FROM executions") == [(1, "PENDING")]
    status = queries.status(db_path)
    assert status["idle"] is False
    assert status["positions"][0]["in_flight_shares"] == "1"
    assert status["positions"][0]["unhedged_shares"] == "-1.7"
    await engine.close()

    restarted = await open_engine(broker=broker)
    await restarted.start()
    # the lookup found it (never placed twice); the re-check at once hedges the remaining -1.7
    assert broker.placed == [coid, f"bot-{engine.meta.instance_id}-2"]
    await restarted.drain(up_to_block=4)
    assert rows(db_path, "SELECT id, shares, status, filled_shares FROM executions") == [
        (1, "1", "FILLED", "1"),
        (2, "1", "FILLED", "1"),
    ]
    assert rows(db_path, "SELECT onchain_net, hedged, in_flight FROM positions") == [
        ("-2.7", "2", "0")
    ]


async def test_unknown_outcome_is_retried_by_the_running_drain(
    open_engine: OpenEngine, enqueue: Enqueue, fills: Fills, db_path: Path
) -> None:
    broker = FakeBroker(script=["unknown-lost"])
    engine = await open_engine(broker=broker)  # resolve delays are 0 in tests
    await _three_sells(enqueue, fills)
    await engine.drain(up_to_block=3)
    coid = f"bot-{engine.meta.instance_id}-1"
    # the pass follows in-flight executions after placing: due at once here, so the same
    # pass asks for it and places it again with the same key
    assert broker.calls == [f"place {coid}", f"lookup {coid}", f"place {coid}"]
    assert rows(db_path, "SELECT status FROM executions") == [("FILLED",)]
    await engine.drain(up_to_block=3)  # nothing left to follow: no broker call
    assert broker.calls == [f"place {coid}", f"lookup {coid}", f"place {coid}"]


async def test_rejections_fail_recheck_and_park_then_unpark(
    open_engine: OpenEngine, enqueue: Enqueue, fills: Fills, db_path: Path
) -> None:
    broker = FakeBroker(script=["reject", "reject", "reject"])
    engine = await open_engine(broker=broker, max_rejections=3)
    await _three_sells(enqueue, fills)
    await engine.drain(up_to_block=3)
    reason = "rejected by the broker: insufficient buying power"
    assert rows(db_path, "SELECT id, status, filled_shares, avg_price, reason FROM executions") == [
        (1, "FAILED", "0", None, reason),
        (2, "FAILED", "0", None, reason),
        (3, "FAILED", "0", None, reason),
    ]
    assert rows(db_path, "SELECT * FROM execution_lots") == []  # a FAILED one links 0
    assert rows(
        db_path,
        "SELECT onchain_net, hedged, in_flight, consecutive_rejections, parked FROM positions",
    ) == [("-1.2", "0", "0", 3, 1)]
    assert rows(db_path, "SELECT trade_id, linked, is_open FROM lots") == [
        (1, "0", 1),
        (2, "0", 1),
        (3, "0", 1),
    ]
    status = queries.status(db_path)
    assert status["positions"][0]["parked"] is True
    assert status["idle"] is True  # parked tickers do not keep the bot busy

    await engine.drain(up_to_block=3)
    assert rows(db_path, "SELECT COUNT(*) FROM executions") == [(3,)]  # parked: no new order

    assert admin.unpark(db_path, "AAPL").changed == 1  # while the engine runs
    await engine.drain(up_to_block=3)  # picks it up at the next batch
    assert rows(db_path, "SELECT id, status, filled_shares FROM executions WHERE id = 4") == [
        (4, "FILLED", "1")
    ]
    assert rows(db_path, "SELECT consecutive_rejections, parked, hedged FROM positions") == [
        (0, 0, "1")
    ]
    assert admin.unpark(db_path, "AAPL").changed == 0


async def test_a_fill_resets_the_rejection_count(
    open_engine: OpenEngine, enqueue: Enqueue, fills: Fills, db_path: Path
) -> None:
    broker = FakeBroker(script=["reject", "reject", "fill"])
    engine = await open_engine(broker=broker, max_rejections=3)
    await enqueue([fills.sell("2.5", "200")])
    await engine.drain(up_to_block=1)
    assert rows(db_path, "SELECT id, shares, status FROM executions") == [
        (1, "2", "FAILED"),
        (2, "2", "FAILED"),
        (3, "2", "FILLED"),
    ]
    assert rows(db_path, "SELECT consecutive_rejections, parked FROM positions") == [(0, 0)]
