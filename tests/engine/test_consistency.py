"""Stored positions always equal what the trades and executions tables add up to."""

from __future__ import annotations

import asyncio
import tempfile
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

from engine_kit import SERVED, FakeBroker, FakeChain, Fills, fast_options, rows
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core import amounts
from bot.core.model import Direction
from bot.core.tokens import DEFAULT_RULES
from bot.devnet.synthetic import OWNER, SYNTHETIC_TOKENS, synthetic_transactions
from bot.engine import Engine
from bot.store import queue
from bot.store.connection import connect

ZERO = Decimal(0)
fill_strategy = st.tuples(
    st.sampled_from([Direction.BUY, Direction.SELL]),
    st.integers(min_value=1, max_value=300).map(lambda n: Decimal(n).scaleb(-2)),
    st.sampled_from(["AAPL", "NVDA"]),
)


def _signed(direction: str, value: Decimal) -> Decimal:
    return value if direction == "BUY" else amounts.sub(ZERO, value)


def check_consistency(db_path: Path) -> None:
    onchain: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for ticker, shares, direction in rows(db_path, "SELECT ticker, shares, direction FROM trades"):
        onchain[ticker] = amounts.add(onchain[ticker], _signed(direction, Decimal(shares)))
    hedged: dict[str, Decimal] = defaultdict(lambda: ZERO)
    flight: dict[str, Decimal] = defaultdict(lambda: ZERO)
    links: dict[int, Decimal] = defaultdict(lambda: ZERO)
    for execution_id, shares in rows(db_path, "SELECT execution_id, shares FROM execution_lots"):
        links[execution_id] = amounts.add(links[execution_id], Decimal(shares))
    for eid, ticker, direction, shares, status, filled in rows(
        db_path, "SELECT id, ticker, direction, shares, status, filled_shares FROM executions"
    ):
        if status in ("PENDING", "SUBMITTED"):
            flight[ticker] = amounts.add(flight[ticker], _signed(direction, Decimal(shares)))
            assert links[eid] == Decimal(shares)
        else:
            hedged[ticker] = amounts.add(hedged[ticker], _signed(direction, Decimal(filled)))
            assert links[eid] == Decimal(filled)
            assert (status == "FILLED") == (Decimal(filled) > 0)
    open_lots: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for ticker, direction, size, closed, linked, is_open in rows(
        db_path, "SELECT ticker, direction, size, closed, linked, is_open FROM lots"
    ):
        left = amounts.sub(amounts.sub(Decimal(size), Decimal(closed)), Decimal(linked))
        assert left >= 0 and bool(is_open) == (left > 0)
        open_lots[ticker] = amounts.add(open_lots[ticker], _signed(direction, left))
    for ticker, net, hedged_text, flight_text in rows(
        db_path, "SELECT ticker, onchain_net, hedged, in_flight FROM positions"
    ):
        assert Decimal(net) == onchain[ticker], ticker
        assert Decimal(hedged_text) == hedged[ticker], ticker
        assert Decimal(flight_text) == flight[ticker], ticker
        unhedged = amounts.add(
            amounts.add(Decimal(net), Decimal(hedged_text)), Decimal(flight_text)
        )
        assert open_lots[ticker] == unhedged, ticker


async def _run(
    db_path: Path, fills: list[tuple[Direction, Decimal, str]], script: list[str], batch: int
) -> None:
    builder = Fills()
    logs = [builder.take(d, str(s), "100", ticker=t) for d, s, t in fills]
    broker = FakeBroker(script=list(script))
    engine = await Engine.open(
        db_path,
        SERVED,
        broker=broker,
        chain=FakeChain(),
        rules=DEFAULT_RULES,
        options=fast_options(batch_size=batch, resolve_base_s=3600.0, resolve_max_s=3600.0),
    )
    conn = await connect(db_path)
    await queue.enqueue(conn, logs)
    await conn.close()
    half = len(logs) // 2
    await engine.drain(up_to_block=half)
    check_consistency(db_path)
    await engine.close()
    restarted = await Engine.open(
        db_path,
        SERVED,
        broker=broker,
        chain=FakeChain(),
        rules=DEFAULT_RULES,
        options=fast_options(batch_size=batch),  # no waits: startup retries at once
    )
    await restarted.start()
    await restarted.drain(up_to_block=len(logs))
    await restarted.close()
    check_consistency(db_path)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fills=st.lists(fill_strategy, min_size=1, max_size=25),
    script=st.lists(
        st.sampled_from(["fill", "fill", "reject", "unknown-lost", "unknown-placed"]), max_size=8
    ),
    batch=st.sampled_from([1, 3, 500]),
)
def test_positions_equal_the_sums_of_trades_and_executions(
    fills: list[tuple[Direction, Decimal, str]], script: list[str], batch: int
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(_run(Path(folder) / "bot.db", fills, script, batch))


async def test_synthetic_stream_books_exactly_the_expected_fills(db_path: Path) -> None:
    txs = list(synthetic_transactions(2000, seed=7))
    chain = FakeChain()
    chain.tokens = dict(SYNTHETIC_TOKENS)
    engine = await Engine.open(
        db_path,
        SERVED,
        broker=FakeBroker(),
        chain=chain,
        rules=DEFAULT_RULES,
        options=fast_options(),
    )
    try:
        conn = await connect(db_path)
        await queue.enqueue(conn, [log for tx in txs for log in tx.logs])
        await conn.close()
        stats = await engine.drain(up_to_block=10**9)
    finally:
        await engine.close()
    expected = [
        (
            f.side.value,
            f.ticker,
            amounts.to_text(f.shares),
            f.direction.value,
            amounts.to_text(f.usdc_amount),
        )
        for tx in txs
        for f in tx.expected
    ]
    # the logs of other owners were stored processed: the pass read only the ones of ours
    ours = sum(
        1 for tx in txs for log in tx.logs if OWNER.lower() in (queue.owners_text(log) or "")
    )
    assert stats.failed == 0 and stats.events == ours and 0 < ours < 2000
    assert (
        rows(db_path, "SELECT side, ticker, shares, direction, usdc_amount FROM trades ORDER BY id")
        == expected
    )
    assert len(expected) > 100
    check_consistency(db_path)
    assert rows(db_path, "SELECT COUNT(*) FROM events WHERE status != 'processed'") == [(0,)]
