"""Compensating trades for processed events whose block left the chain (SPEC §7).

A reorg never silently rewrites history: each fill trade of a removed (or since revived, so
re-included under a new ``inclusion``) event gets one trade of kind ``compensation`` with the
opposite direction and the same shares, referencing it. It goes through the accumulator like any
fill, in the consumer's transaction, before any pending event is processed.
"""

from __future__ import annotations

from collections.abc import Sequence

import aiosqlite

from bot.core.accumulator import Accumulator
from bot.core.amounts import from_text
from bot.core.model import Direction, Side, Trade, TradeKind
from bot.store.ledger import insert_trade_in_txn

_STALE_FILLS = """
SELECT t.id, t.event_id, t.tx_hash, t.log_index, t.side, t.inclusion, t.block_number,
       t.block_hash, t.ticker, t.shares, t.direction, t.price_usdc, t.usdc_amount,
       t.equity_token, t.stable_token
FROM trades t
WHERE t.tx_hash = ? AND t.log_index = ? AND t.kind = 'fill'
  AND (? = 'removed' OR t.inclusion < ?)
  AND NOT EXISTS (SELECT 1 FROM trades c
                  WHERE c.kind = 'compensation' AND c.reverses_trade_id = t.id)
ORDER BY t.id
"""


def _reversal(row: Sequence[object]) -> tuple[int, int, Trade]:
    (trade_id, event_id, tx_hash, log_index, side, inclusion, block_number, block_hash, ticker,
     shares, direction, price, usdc, equity, stable) = row  # fmt: skip
    original = Direction(str(direction))
    trade = Trade(
        tx_hash=str(tx_hash),
        log_index=int(str(log_index)),
        side=Side(str(side)),
        inclusion=int(str(inclusion)),
        kind=TradeKind.COMPENSATION,
        block_number=int(str(block_number)),
        block_hash=str(block_hash),
        ticker=str(ticker),
        shares=from_text(str(shares)),
        direction=original.opposite,
        price_usdc=from_text(str(price)),
        usdc_amount=from_text(str(usdc)),
        equity_token=str(equity),
        stable_token=str(stable),
        reverses_trade_id=int(str(trade_id)),
    )
    return int(str(trade_id)), int(str(event_id)), trade


async def book_compensations_in_txn(
    conn: aiosqlite.Connection, accumulator: Accumulator
) -> list[str]:
    """Book every owed compensation; returns the tickers touched (to re-check for hedging)."""
    flagged = list(
        await conn.execute_fetchall(
            "SELECT id, tx_hash, log_index, inclusion, status FROM events WHERE compensate = 1"
            " ORDER BY block_number, log_index"
        )
    )
    tickers: list[str] = []
    for event_id, tx_hash, log_index, inclusion, status in flagged:
        rows = await conn.execute_fetchall(
            _STALE_FILLS, (tx_hash, log_index, str(status), int(str(inclusion)))
        )
        for row in rows:
            _trade_id, _event, trade = _reversal(row)
            booked = await insert_trade_in_txn(conn, int(str(event_id)), trade)
            if booked is None:
                continue
            accumulator.apply_fill(booked, trade)
            if trade.ticker not in tickers:
                tickers.append(trade.ticker)
        await conn.execute("UPDATE events SET compensate = 0 WHERE id = ?", (event_id,))
    return tickers
