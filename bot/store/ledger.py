"""Trades, skipped fills, token metadata and the accumulator's state in SQLite.

Amounts are canonical decimal TEXT (``amounts.to_text``) read back with ``amounts.from_text``;
nothing is summed in SQL. Write functions expect the caller's transaction to be open.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import aiosqlite

from bot.core import amounts
from bot.core.conversion import DecimalsMismatch
from bot.core.lots import Changes, Execution, Link, Lot, Position
from bot.core.model import Direction, ExecutionStatus, SkippedFill, TokenInfo, Trade
from bot.store.queue import now_text
from bot.store.txn import write_transaction

IN_FLIGHT = (ExecutionStatus.PENDING.value, ExecutionStatus.SUBMITTED.value)


@dataclass(frozen=True, slots=True)
class AccumulatorState:
    """What the accumulator needs to be rebuilt exactly (ACCUMULATOR_API ``__init__``)."""

    next_execution_id: int
    positions: list[Position]
    lots: list[Lot]
    executions: list[Execution]
    links: list[Link]


# --- trades and skipped fills ------------------------------------------------------------------


async def insert_trade_in_txn(
    conn: aiosqlite.Connection, event_id: int, trade: Trade, *, late: bool = False
) -> int | None:
    """Insert one trade; its id, or None when that trade was already booked (no double count)."""
    rows = list(
        await conn.execute_fetchall(
            "INSERT INTO trades (event_id, tx_hash, log_index, side, inclusion, kind, block_number,"
            " block_hash, ticker, shares, direction, price_usdc, usdc_amount, equity_token,"
            " stable_token, reverses_trade_id, late, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (tx_hash, log_index, side, inclusion, kind) DO NOTHING RETURNING id",
            (event_id, *_trade_values(trade, late, now_text())),
        )
    )
    return int(rows[0][0]) if rows else None


def _trade_values(trade: Trade, late: bool, now: str) -> tuple[object, ...]:
    """The trades columns after ``event_id``, in table order."""
    return (
        trade.tx_hash,
        trade.log_index,
        trade.side.value,
        trade.inclusion,
        trade.kind.value,
        trade.block_number,
        trade.block_hash,
        trade.ticker,
        amounts.to_text(trade.shares),
        trade.direction.value,
        amounts.to_text(trade.price_usdc),
        amounts.to_text(trade.usdc_amount),
        trade.equity_token,
        trade.stable_token,
        trade.reverses_trade_id,
        int(late),
        now,
    )


async def insert_trades_in_txn(
    conn: aiosqlite.Connection, trades: Sequence[tuple[int, int, Trade, bool]]
) -> None:
    """Insert trades with the ids they were given ``(id, event_id, trade, late)``; a trade booked
    before raises (the caller then books event by event, where it is skipped)."""
    if not trades:
        return
    now = now_text()
    await conn.executemany(
        "INSERT INTO trades (id, event_id, tx_hash, log_index, side, inclusion, kind,"
        " block_number, block_hash, ticker, shares, direction, price_usdc, usdc_amount,"
        " equity_token, stable_token, reverses_trade_id, late, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (trade_id, event_id, *_trade_values(t, late, now))
            for trade_id, event_id, t, late in trades
        ],
    )


async def next_trade_id(conn: aiosqlite.Connection) -> int:
    rows = await conn.execute_fetchall("SELECT COALESCE(MAX(id), 0) + 1 FROM trades")
    return int(next(iter(rows))[0])


async def insert_skipped_in_txn(
    conn: aiosqlite.Connection, event_id: int, inclusion: int, skipped: Sequence[SkippedFill]
) -> None:
    if not skipped:
        return
    now = now_text()
    await conn.executemany(
        "INSERT INTO skipped_fills (event_id, tx_hash, log_index, side, inclusion, reason,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [
            (event_id, s.tx_hash, s.log_index, s.side.value, inclusion, s.reason, now)
            for s in skipped
        ],
    )


async def insert_mismatches_in_txn(
    conn: aiosqlite.Connection, event_id: int, mismatches: Sequence[DecimalsMismatch]
) -> None:
    if not mismatches:
        return
    now = now_text()
    await conn.executemany(
        "INSERT INTO decimals_mismatches (event_id, token, detail, created_at)"
        " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [
            (
                event_id,
                m.token,
                f"{m.symbol}: IO decimals {m.io_decimals}, token decimals() {m.token_decimals}",
                now,
            )
            for m in mismatches
        ],
    )


# --- token metadata ----------------------------------------------------------------------------


async def load_tokens(conn: aiosqlite.Connection) -> dict[str, TokenInfo]:
    rows = await conn.execute_fetchall("SELECT address, symbol, decimals FROM tokens")
    return {str(a): TokenInfo(str(a), str(s), int(d)) for a, s, d in rows}


async def save_token(conn: aiosqlite.Connection, info: TokenInfo) -> None:
    """Cache one token's metadata (own transaction; fetched once per token)."""
    async with write_transaction(conn):
        await conn.execute(
            "INSERT INTO tokens (address, symbol, decimals, fetched_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (address) DO NOTHING",
            (info.address, info.symbol, info.decimals, now_text()),
        )


# --- accumulator state -------------------------------------------------------------------------


def _dec(value: object) -> Decimal:
    return amounts.from_text(str(value))


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _time(value: object) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


async def save_changes_in_txn(conn: aiosqlite.Connection, changes: Changes) -> None:
    """Upsert everything the accumulator changed (``take_changes()``); zero links are deleted."""
    now = now_text()
    if changes.lots:
        await conn.executemany(
            "INSERT INTO lots (trade_id, ticker, direction, size, price_usdc, closed, linked,"
            " is_open) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (trade_id) DO UPDATE SET"
            " closed = excluded.closed, linked = excluded.linked, is_open = excluded.is_open",
            [
                (
                    lot.trade_id,
                    lot.ticker,
                    lot.direction.value,
                    amounts.to_text(lot.size),
                    amounts.to_text(lot.price_usdc),
                    amounts.to_text(lot.closed),
                    amounts.to_text(lot.linked),
                    int(lot.open > 0),
                )
                for lot in changes.lots.values()
            ],
        )
    if changes.positions:
        await conn.executemany(
            "INSERT INTO positions (ticker, onchain_net, hedged, in_flight, consecutive_rejections,"
            " parked, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (ticker) DO UPDATE SET"
            " onchain_net = excluded.onchain_net, hedged = excluded.hedged,"
            " in_flight = excluded.in_flight,"
            " consecutive_rejections = excluded.consecutive_rejections,"
            " parked = excluded.parked, updated_at = excluded.updated_at",
            [
                (
                    p.ticker,
                    amounts.to_text(p.onchain_net),
                    amounts.to_text(p.hedged),
                    amounts.to_text(p.in_flight),
                    p.consecutive_rejections,
                    int(p.parked),
                    now,
                )
                for p in changes.positions.values()
            ],
        )
    if changes.executions:
        await conn.executemany(
            "INSERT INTO executions (id, ticker, direction, shares, client_order_id, status,"
            " broker_order_id, filled_shares, avg_price, reason, kind, unknown_at,"
            " not_found_at, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
            " status = excluded.status, broker_order_id = excluded.broker_order_id,"
            " filled_shares = excluded.filled_shares, avg_price = excluded.avg_price,"
            " reason = excluded.reason, unknown_at = excluded.unknown_at,"
            " not_found_at = excluded.not_found_at, updated_at = excluded.updated_at",
            [
                (
                    e.id,
                    e.ticker,
                    e.direction.value,
                    amounts.to_text(e.shares),
                    e.client_order_id,
                    e.status.value,
                    e.broker_order_id,
                    amounts.to_text(e.filled_shares),
                    None if e.avg_price is None else amounts.to_text(e.avg_price),
                    e.reason,
                    e.kind,
                    _iso(e.unknown_since),
                    _iso(e.not_found_since),
                    _iso(e.created_at) or now,
                    now,
                )
                for e in changes.executions.values()
            ],
        )
    if changes.links:
        live = [link for link in changes.links.values() if link.shares > 0]
        gone = [link for link in changes.links.values() if link.shares <= 0]
        await conn.executemany(
            "INSERT INTO execution_lots (execution_id, lot_id, shares, seq) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (execution_id, lot_id) DO UPDATE SET shares = excluded.shares",
            [(k.execution_id, k.lot_id, amounts.to_text(k.shares), k.seq) for k in live],
        )
        await conn.executemany(
            "DELETE FROM execution_lots WHERE execution_id = ? AND lot_id = ?",
            [(k.execution_id, k.lot_id) for k in gone],
        )


async def load_accumulator_state(conn: aiosqlite.Connection) -> AccumulatorState:
    """Positions, open lots, in-flight executions and their links (and their lots)."""
    rows = list(await conn.execute_fetchall("SELECT COALESCE(MAX(id), 0) FROM executions"))
    next_execution_id = int(rows[0][0]) + 1
    positions = [
        Position(
            ticker=str(t),
            onchain_net=_dec(net),
            hedged=_dec(hedged),
            in_flight=_dec(flight),
            consecutive_rejections=int(rej),
            parked=bool(parked),
        )
        for t, net, hedged, flight, rej, parked in await conn.execute_fetchall(
            "SELECT ticker, onchain_net, hedged, in_flight, consecutive_rejections, parked"
            " FROM positions ORDER BY ticker"
        )
    ]
    in_flight_sql = f"status IN ('{IN_FLIGHT[0]}', '{IN_FLIGHT[1]}')"
    executions = [
        Execution(
            id=int(i),
            ticker=str(t),
            direction=Direction(str(d)),
            shares=_dec(s),
            client_order_id=str(c),
            status=ExecutionStatus(str(st)),
            broker_order_id=None if b is None else str(b),
            filled_shares=_dec(f),
            avg_price=None if a is None else _dec(a),
            reason=None if r is None else str(r),
            kind=str(k),
            created_at=_time(ca),
            unknown_since=_time(us),
            not_found_since=_time(nf),
        )
        for i, t, d, s, c, st, b, f, a, r, k, ca, us, nf in await conn.execute_fetchall(
            "SELECT id, ticker, direction, shares, client_order_id, status, broker_order_id,"
            " filled_shares, avg_price, reason, kind, created_at, unknown_at, not_found_at"
            f" FROM executions WHERE {in_flight_sql} ORDER BY id"
        )
    ]
    links = [
        Link(execution_id=int(e), lot_id=int(lot), shares=_dec(s), seq=int(q))
        for e, lot, s, q in await conn.execute_fetchall(
            "SELECT l.execution_id, l.lot_id, l.shares, l.seq FROM execution_lots l"
            f" JOIN executions e ON e.id = l.execution_id WHERE e.{in_flight_sql}"
            " ORDER BY l.execution_id, l.seq"
        )
    ]
    lots = [
        Lot(
            trade_id=int(i),
            ticker=str(t),
            direction=Direction(str(d)),
            size=_dec(size),
            price_usdc=_dec(p),
            closed=_dec(c),
            linked=_dec(linked),
        )
        for i, t, d, size, p, c, linked in await conn.execute_fetchall(
            "SELECT trade_id, ticker, direction, size, price_usdc, closed, linked FROM lots"
            " WHERE is_open = 1 OR trade_id IN (SELECT l.lot_id FROM execution_lots l"
            f" JOIN executions e ON e.id = l.execution_id WHERE e.{in_flight_sql})"
            " ORDER BY trade_id"
        )
    ]
    return AccumulatorState(next_execution_id, positions, lots, executions, links)


# --- pause and parking -------------------------------------------------------------------------


_ATTENTION = "(status = 'failed' OR (status = 'pending' AND attempts > 0))"
_PAUSING = f"{_ATTENTION} AND (is_ours IS NULL OR is_ours = 1)"
# Forced: without statistics the planner scans the whole pending backlog through the status index.
_EVENTS_ATTENTION = "events INDEXED BY events_attention"


async def pause_event_ids(conn: aiosqlite.Connection) -> list[int]:
    """Events that pause new executions: failed (or re-queued after failing, until processed)
    events that are ours or whose owner could not be read (SPEC §8)."""
    rows = await conn.execute_fetchall(
        f"SELECT id FROM {_EVENTS_ATTENTION} WHERE {_PAUSING} ORDER BY id"
    )
    return [int(r[0]) for r in rows]


PAUSE_REASONS_SQL = (
    f"SELECT id, tx_hash, log_index, is_ours, status, reason FROM {_EVENTS_ATTENTION}"
    f" WHERE {_PAUSING}"
    " ORDER BY id"
)


def pause_reason_text(  # noqa: PLR0917 - one row's columns, in order
    event_id: int, tx_hash: str, log_index: int, is_ours: object, status: str, reason: object
) -> str:
    """One line of ``status``: which event pauses executions, why, and what to do."""
    whose = "our order" if is_ours == 1 else "an order whose owner could not be read"
    if status == "pending":
        return (
            f"event {event_id} (tx {tx_hash} log {log_index}) of {whose} failed before "
            f"({reason}) and waits to be retried"
        )
    return (
        f"event {event_id} (tx {tx_hash} log {log_index}) of {whose} failed: {reason}; "
        f"`bot retry {event_id}` after fixing the cause, or `bot skip {event_id} --reason TEXT`"
    )


async def unparked_tickers(conn: aiosqlite.Connection) -> set[str]:
    rows = await conn.execute_fetchall("SELECT ticker FROM positions WHERE parked = 0")
    return {str(r[0]) for r in rows}
