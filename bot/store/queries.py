"""Read-only views for ``status``, ``trades`` and ``executions`` (SPEC §9).

No lock, no migration, no network: a read-only connection that refuses a database of another
schema version. Amounts are canonical decimal strings (``"-0.2"``, ``"1"``); the CLI prints these
plain dicts as they are.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from bot.core import amounts
from bot.store.connection import open_readonly
from bot.store.ledger import PAUSE_REASONS_SQL, pause_reason_text
from bot.store.runtime import read_provider_state

RECENT_EXECUTIONS = 20

_EXECUTION_COLUMNS = (
    "id, ticker, direction, shares, filled_shares, status, client_order_id, broker_order_id,"
    " avg_price, reason, created_at, updated_at"
)


def _text(value: object) -> str:
    return amounts.to_text(amounts.from_text(str(value)))


def _execution(row: tuple[Any, ...]) -> dict[str, Any]:
    (id_, ticker, direction, shares, filled, status, coid, broker_id, avg, reason, c, u) = row
    return {
        "id": int(id_),
        "ticker": ticker,
        "direction": direction,
        "shares": _text(shares),
        "filled_shares": _text(filled),
        "status": status,
        "client_order_id": coid,
        "broker_order_id": broker_id,
        "avg_price": None if avg is None else _text(avg),
        "reason": reason,
        "created_at": c,
        "updated_at": u,
    }


def _queue_counts(conn: sqlite3.Connection) -> dict[str, int]:
    counts = {"pending": 0, "processed": 0, "removed": 0, "failed": 0, "skipped": 0}
    for status, count in conn.execute("SELECT status, COUNT(*) FROM events GROUP BY status"):
        counts[str(status)] = int(count)
    return counts


def _positions(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    positions = []
    for ticker, net, hedged, flight, parked, rejections, held, drift in conn.execute(
        "SELECT p.ticker, onchain_net, hedged, in_flight, parked, consecutive_rejections,"
        " b.broker_position_shares, b.drift_shares"
        " FROM positions p LEFT JOIN ticker_broker b ON b.ticker = p.ticker ORDER BY p.ticker"
    ):
        net_d, hedged_d, flight_d = (amounts.from_text(str(v)) for v in (net, hedged, flight))
        unhedged = amounts.add(amounts.add(net_d, hedged_d), flight_d)
        positions.append(
            {
                "ticker": ticker,
                "onchain_net_shares": amounts.to_text(net_d),
                "hedged_shares": amounts.to_text(hedged_d),
                "in_flight_shares": amounts.to_text(flight_d),
                "unhedged_shares": amounts.to_text(unhedged),
                "parked": bool(parked),
                "consecutive_rejections": int(rejections),
                "broker_position_shares": None if held is None else _text(held),
                "drift_shares": None if drift is None else _text(drift),
            }
        )
    return positions


def _pause_reasons(conn: sqlite3.Connection) -> list[str]:
    return [
        pause_reason_text(int(i), str(tx), int(li), ours, str(status), reason)
        for i, tx, li, ours, status, reason in conn.execute(PAUSE_REASONS_SQL)
    ]


def status(db_path: str | Path, *, confirmations: int | None = None) -> dict[str, Any]:
    """The ``status --json`` object (SPEC §9), plus ``paused_reasons`` and
    ``decimals_mismatches``. ``head_block`` is the last head ``run`` recorded (null for now)."""
    conn = open_readonly(db_path)
    try:
        conn.execute("BEGIN")  # one consistent snapshot
        row = conn.execute("SELECT block_number FROM checkpoint WHERE id = 1").fetchone()
        checkpoint_block = None if row is None else int(row[0])
        head_row = conn.execute("SELECT value FROM meta WHERE key = 'head_block'").fetchone()
        head_block = None if head_row is None else int(head_row[0])
        queue = _queue_counts(conn)
        positions = _positions(conn)
        executions = [
            _execution(r)
            for r in conn.execute(
                f"SELECT {_EXECUTION_COLUMNS} FROM executions WHERE status IN"
                " ('PENDING', 'SUBMITTED') OR id IN (SELECT id FROM executions ORDER BY id DESC"
                " LIMIT ?) ORDER BY id",
                (RECENT_EXECUTIONS,),
            )
        ]
        paused = _pause_reasons(conn)
        mismatches = [
            {"token": token, "detail": detail, "events": int(n)}
            for token, detail, n in conn.execute(
                "SELECT token, detail, COUNT(*) FROM decimals_mismatches GROUP BY token, detail"
                " ORDER BY token, detail"
            )
        ]
        runtime = {
            str(k): json.loads(str(v))
            for k, v in conn.execute("SELECT key, value FROM broker_runtime")
        }
        provider = read_provider_state(conn)
        conn.execute("COMMIT")
    finally:
        conn.close()
    in_flight = any(e["status"] in ("PENDING", "SUBMITTED") for e in executions)
    caught_up = head_block is None or (
        checkpoint_block is not None and checkpoint_block >= head_block - (confirmations or 0)
    )
    return {
        "idle": queue["pending"] == 0 and not in_flight and not paused and caught_up,
        "checkpoint_block": checkpoint_block,
        "head_block": head_block,
        "queue": queue,
        "positions": positions,
        "executions": executions,
        "hedging_blocked": runtime.get("hedging_blocked", []),
        "market_open": runtime.get("market_open"),
        "next_open": runtime.get("next_open"),
        "market_as_of": runtime.get("market_as_of"),
        "paused_reasons": paused,
        "decimals_mismatches": mismatches,
        # what `run` last stored about its provider (never asked over the network here)
        "provider": provider.provider,
        "provider_trouble": provider.trouble,
    }


def pause_reasons(db_path: str | Path) -> list[str]:
    """Why new executions are paused (empty when they are not)."""
    conn = open_readonly(db_path)
    try:
        return _pause_reasons(conn)
    finally:
        conn.close()


def trades(db_path: str | Path) -> list[dict[str, Any]]:
    """Every booked trade, oldest first."""
    conn = open_readonly(db_path)
    try:
        rows = conn.execute(
            "SELECT id, tx_hash, log_index, side, inclusion, kind, block_number, block_hash,"
            " ticker, shares, direction, price_usdc, usdc_amount, equity_token, stable_token,"
            " reverses_trade_id, late, created_at FROM trades ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
    keys = [
        "id",
        "tx_hash",
        "log_index",
        "side",
        "inclusion",
        "kind",
        "block_number",
        "block_hash",
        "ticker",
        "shares",
        "direction",
        "price_usdc",
        "usdc_amount",
        "equity_token",
        "stable_token",
        "reverses_trade_id",
        "late",
        "created_at",
    ]
    result = []
    for row in rows:
        item = dict(zip(keys, row, strict=True))
        for key in ("shares", "price_usdc", "usdc_amount"):
            item[key] = _text(item[key])
        item["late"] = bool(item["late"])
        result.append(item)
    return result


def executions(db_path: str | Path) -> list[dict[str, Any]]:
    """Every execution, oldest first, with the ``status`` executions' fields and more."""
    conn = open_readonly(db_path)
    try:
        rows = conn.execute(f"SELECT {_EXECUTION_COLUMNS} FROM executions ORDER BY id").fetchall()
    finally:
        conn.close()
    return [_execution(r) for r in rows]
