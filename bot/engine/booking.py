"""Booking a batch of prepared events in one go (SPEC §4): the fast path of the drain.

:func:`plan_batch` applies every fill of ours to the in-memory accumulator, giving each trade its
id up front (lot id == trade id), and gathers every row the batch writes; the engine then writes
them with one ``executemany`` per table, in the same transaction as the processed marks. No I/O
here. If anything in the batch fails (a trade already booked, a fill the accumulator refuses),
the engine rolls the whole transaction back and books the batch event by event instead, where a
bad event is isolated and marked failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.core.accumulator import Accumulator
from bot.core.conversion import DecimalsMismatch
from bot.core.model import SkippedFill, Trade
from bot.engine.prepare import Prepared


@dataclass(slots=True)
class BatchCounts:
    events: int = 0
    ours: int = 0
    trades: int = 0


@dataclass
class BatchRows:
    """What one batch writes, besides the accumulator's own changes."""

    trades: list[tuple[int, int, Trade, bool]] = field(default_factory=list)  # id, event, late
    skipped: list[tuple[int, int, SkippedFill]] = field(default_factory=list)  # event, inclusion
    mismatches: list[tuple[int, DecimalsMismatch]] = field(default_factory=list)
    processed: list[tuple[int, bool]] = field(default_factory=list)  # event id, is ours
    failures: list[Prepared] = field(default_factory=list)  # failed while prepared
    ours: list[int] = field(default_factory=list)  # event ids booked as ours
    late: list[tuple[Prepared, list[str]]] = field(default_factory=list)
    counts: BatchCounts = field(default_factory=BatchCounts)


def plan_batch(
    prepared: list[Prepared], acc: Accumulator, *, next_trade_id: int, frontier: int
) -> BatchRows:
    """Apply the batch's fills to ``acc`` (raises whatever the accumulator raises) and return
    the rows to write. ``frontier``: the highest processed block before this pass (an event of
    ours below it is late, SPEC §10)."""
    rows = BatchRows()
    trade_id = next_trade_id
    for item in prepared:
        rows.counts.events += 1
        event = item.event
        if item.failure is not None:
            rows.failures.append(item)
            continue
        if not item.ours or item.conversion is None:
            rows.processed.append((event.id, False))
            continue
        rows.counts.ours += 1
        late = event.raw.block_number < frontier
        tickers: list[str] = []
        for trade in item.conversion.trades:
            acc.apply_fill(trade_id, trade)
            rows.trades.append((trade_id, event.id, trade, late))
            tickers.append(trade.ticker)
            trade_id += 1
        rows.counts.trades += len(tickers)
        rows.skipped += [(event.id, event.inclusion, s) for s in item.conversion.skipped]
        rows.mismatches += [(event.id, m) for m in item.conversion.decimals_mismatches]
        rows.processed.append((event.id, True))
        rows.ours.append(event.id)
        if late and tickers:
            rows.late.append((item, tickers))
    return rows
