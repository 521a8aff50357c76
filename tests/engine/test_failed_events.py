"""Events that cannot be processed: failed with reason and attempts, pausing, retry and skip."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from engine_kit import Enqueue, FakeChain, Fills, OpenEngine, rows

from bot.chain.ws import RpcError
from bot.core.abi import TOPIC_TAKE_ORDER_V2
from bot.core.accumulator import Accumulator
from bot.core.model import RawLog, Trade
from bot.devnet.synthetic import AAPL, OWNER, USDC, At, clear_logs, make_io, make_order
from bot.errors import TransientError
from bot.store import admin, queries


def _garbage(block: int) -> RawLog:
    return RawLog(
        block_number=block,
        block_hash=f"0x{block:064x}",
        tx_hash=f"0x{block + 10**6:064x}",
        tx_index=0,
        log_index=0,
        address="0x" + "11" * 20,
        topic0=TOPIC_TAKE_ORDER_V2,
        data=b"\x01" * 10,
    )


class MissingTokenChain(FakeChain):
    def __init__(self, missing: str) -> None:
        super().__init__()
        self.missing: str | None = missing

    async def token_info(self, address: str):  # type: ignore[no-untyped-def]
        if address == self.missing:
            self.token_calls.append(address)
            raise RpcError("eth_call: execution reverted", code=-32000)
        return await super().token_info(address)


async def test_unreadable_owner_fails_pauses_executions_until_skipped(
    open_engine: OpenEngine, enqueue: Enqueue, fills: Fills, db_path: Path
) -> None:
    engine = await open_engine()
    fills.block = 1
    await enqueue([_garbage(1), fills.sell("0.7", "200"), fills.sell("0.5", "200")])
    stats = await engine.drain(up_to_block=10)
    assert (stats.events, stats.failed, stats.trades, stats.executions) == (3, 1, 2, 0)
    ((status, is_ours, reason, attempts),) = rows(
        db_path, "SELECT status, is_ours, reason, attempts FROM events WHERE id = 1"
    )
    assert (status, is_ours, attempts) == ("failed", None, 1)
    assert reason.startswith("owner unreadable: undecodable log")
    assert rows(db_path, "SELECT COUNT(*) FROM executions") == [(0,)]  # paused at -1.2
    report = queries.status(db_path)
    assert report["idle"] is False
    assert report["queue"]["failed"] == 1
    (why,) = report["paused_reasons"]
    assert "event 1 " in why and "owner could not be read" in why and "bot skip 1" in why
    assert queries.pause_reasons(db_path) == [why]

    admin.skip(db_path, 1, "not an orderbook log")  # while the engine runs
    await engine.drain(up_to_block=10)
    assert rows(db_path, "SELECT id, direction, shares, status FROM executions") == [
        (1, "BUY", "1", "FILLED")
    ]
    assert queries.status(db_path)["paused_reasons"] == []


async def test_unknown_token_fails_then_retry_books_it(
    open_engine: OpenEngine, enqueue: Enqueue, fills: Fills, db_path: Path
) -> None:
    chain = MissingTokenChain(AAPL)
    engine = await open_engine(chain=chain)
    await enqueue([fills.sell("1.5", "200")])
    await engine.drain(up_to_block=10)
    ((status, is_ours, reason, attempts),) = rows(
        db_path, "SELECT status, is_ours, reason, attempts FROM events"
    )
    assert (status, is_ours, attempts) == ("failed", 1, 1)
    assert reason == f"unknown token {AAPL}: eth_call: execution reverted"
    assert chain.token_calls.count(AAPL) == 1  # not transient: no retries
    assert "of our order failed" in queries.pause_reasons(db_path)[0]

    await enqueue([fills.sell("0.5", "200")])  # other events keep flowing, but paused
    await engine.drain(up_to_block=10)
    assert rows(db_path, "SELECT status FROM events ORDER BY id") == [("failed",), ("failed",)]

    chain.missing = None
    admin.retry(db_path, 1)
    await engine.drain(up_to_block=10)
    # event 1 is booked; event 2 is still failed and ours, so executions stay paused
    assert rows(db_path, "SELECT status FROM events ORDER BY id") == [("processed",), ("failed",)]
    assert rows(db_path, "SELECT COUNT(*) FROM executions") == [(0,)]
    await engine.close()

    restarted = await open_engine(chain=chain)
    assert await restarted.start() == 1  # failed events are retried at every start
    await restarted.drain(up_to_block=10)
    assert rows(db_path, "SELECT status, attempts FROM events ORDER BY id") == [
        ("processed", 1),
        ("processed", 1),
    ]
    assert rows(db_path, "SELECT shares, status FROM executions") == [("2", "FILLED")]
    assert rows(db_path, "SELECT address, symbol, decimals FROM tokens ORDER BY symbol") == sorted(
        [(AAPL, "AAPLs1", 18), (USDC, "USDC", 6)], key=lambda r: r[1]
    )


async def test_transient_rpc_faults_are_retried_before_failing(
    open_engine: OpenEngine, enqueue: Enqueue, fills: Fills, db_path: Path
) -> None:
    chain = FakeChain()
    chain.faults = [TransientError("timeout"), TransientError("timeout")]
    engine = await open_engine(chain=chain)  # rpc_retry: 3 tries
    await enqueue([fills.sell("0.5", "200")])
    await engine.drain(up_to_block=10)
    assert rows(db_path, "SELECT status FROM events") == [("processed",)]

    chain.faults = [TransientError("timeout")] * 3
    chain.tokens = dict(chain.tokens)
    await enqueue([fills.sell("0.5", "200", ticker="NVDA")])
    await engine.drain(up_to_block=10)
    ((status, reason),) = rows(db_path, "SELECT status, reason FROM events WHERE id = 2")
    assert status == "failed"
    assert reason == "transient error after 3 tries: timeout"


def _clear(block: int) -> tuple[RawLog, RawLog]:
    ours = make_order(OWNER, [make_io(USDC)], [make_io(AAPL)])  # alice sells AAPL
    other = make_order("0x" + "33" * 20, [make_io(AAPL)], [make_io(USDC)])
    return clear_logs(
        ours,
        other,
        alice_input=300_000_000,  # 300 USDC
        alice_output=1_500_000_000_000_000_000,  # 1.5 AAPL
        bob_input=1_500_000_000_000_000_000,
        bob_output=300_000_000,
        at=At(block_number=block),
    )


async def test_clear_amounts_from_the_queue_or_the_receipt_or_it_fails(
    open_engine: OpenEngine, enqueue: Enqueue, db_path: Path
) -> None:
    chain = FakeChain()
    engine = await open_engine(chain=chain)
    in_queue = _clear(1)
    from_receipt = _clear(2)
    missing = _clear(3)
    chain.receipts[from_receipt[0].tx_hash] = list(from_receipt)
    await enqueue([*in_queue, from_receipt[0], missing[0]])
    await engine.drain(up_to_block=10)
    assert rows(db_path, "SELECT block_number, log_index, status, reason FROM events ORDER BY id")[
        :3
    ] == [(1, 0, "processed", None), (1, 1, "processed", None), (2, 0, "processed", None)]
    ((status, reason),) = rows(db_path, "SELECT status, reason FROM events WHERE block_number = 3")
    assert status == "failed"
    assert "AfterClear is missing from the queue and from the transaction receipt" in reason
    assert rows(db_path, "SELECT side, ticker, shares, direction, price_usdc FROM trades") == [
        ("alice", "AAPL", "1.5", "SELL", "200"),
        ("alice", "AAPL", "1.5", "SELL", "200"),
    ]
    # hedges are decided at the pass's end, and the failed clear of ours pauses them: hedging a
    # net that may be missing a fill could be wrong
    assert rows(db_path, "SELECT shares, status FROM executions") == []
    assert len(queries.pause_reasons(db_path)) == 1
    (event_id,) = next(iter(rows(db_path, "SELECT id FROM events WHERE status = 'failed'")))
    assert admin.skip(db_path, event_id, "tested: receipt lost").changed == 1
    await engine.drain(up_to_block=10)
    assert rows(db_path, "SELECT direction, shares, status FROM executions") == [
        ("BUY", "3", "FILLED")
    ]


async def test_an_error_while_booking_rolls_back_that_event_and_rebuilds_the_state(
    open_engine: OpenEngine,
    enqueue: Enqueue,
    fills: Fills,
    db_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = Accumulator.apply_fill

    def flaky(self: Accumulator, trade_id: int, trade: Trade) -> None:
        original(self, trade_id, trade)  # mutates memory first, then fails
        if trade.shares == Decimal("0.5"):
            raise RuntimeError("disk on fire")

    monkeypatch.setattr(Accumulator, "apply_fill", flaky)
    engine = await open_engine()
    await enqueue(
        [
            fills.sell("0.3", "200"),
            fills.sell("0.5", "210"),
            fills.sell("0.4", "220"),
            fills.sell("0.6", "230"),
        ]
    )
    stats = await engine.drain(up_to_block=10)
    assert (stats.failed, stats.trades) == (1, 3)
    assert rows(db_path, "SELECT status, reason FROM events ORDER BY id") == [
        ("processed", None),
        ("failed", "RuntimeError: disk on fire"),
        ("processed", None),
        ("processed", None),
    ]
    assert rows(db_path, "SELECT id, shares FROM trades ORDER BY id") == [
        (1, "0.3"),
        (2, "0.4"),  # the failed event's trade was rolled back with it
        (3, "0.6"),
    ]
    position = engine.accumulator.position("AAPL")
    assert position is not None and position.onchain_net == Decimal("-1.3")
    assert rows(db_path, "SELECT onchain_net FROM positions") == [("-1.3",)]
    assert rows(db_path, "SELECT COUNT(*) FROM executions") == [(0,)]  # paused

    monkeypatch.setattr(Accumulator, "apply_fill", original)
    admin.retry(db_path, 2)
    await engine.drain(up_to_block=10)
    assert rows(db_path, "SELECT onchain_net, hedged FROM positions") == [("-1.8", "1")]
