"""Admin marks for the CLI (SPEC §8): one short transaction each, no lock, no network.

The running consumer acts on them: it re-reads pending rows, failed events and parked flags at
every batch.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bot.errors import AdminError
from bot.store.connection import open_admin
from bot.store.queue import now_text


@dataclass(frozen=True, slots=True)
class AdminResult:
    changed: int
    message: str


@contextmanager
def _transaction(db_path: str | Path) -> Iterator[sqlite3.Connection]:
    """One short write transaction on its own connection: committed, or rolled back on error."""
    conn = open_admin(db_path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()


def retry(db_path: str | Path, event_id: int | None = None) -> AdminResult:
    """Failed event(s) back to pending: one event, or every failed one when ``event_id`` is None."""
    with _transaction(db_path) as conn:
        where, params = "status = 'failed'", list[int]()
        if event_id is not None:
            _require_status(conn, event_id, "failed", "retry")
            where, params = "status = 'failed' AND id = ?", [event_id]
        cursor = conn.execute(
            f"UPDATE events SET status = 'pending', updated_at = ? WHERE {where}",
            (now_text(), *params),
        )
    what = f"event {event_id}" if event_id is not None else f"{cursor.rowcount} failed event(s)"
    return AdminResult(cursor.rowcount, f"{what} queued again")


def skip(db_path: str | Path, event_id: int, reason: str) -> AdminResult:
    """A failed event → skipped, with the operator's reason (it will never be booked)."""
    if not reason.strip():
        raise AdminError("skip needs a reason")
    with _transaction(db_path) as conn:
        previous = _require_status(conn, event_id, "failed", "skip")
        conn.execute(
            "UPDATE events SET status = 'skipped', reason = ?, updated_at = ? WHERE id = ?",
            (f"skipped by operator: {reason} (failure was: {previous})", now_text(), event_id),
        )
    return AdminResult(1, f"event {event_id} skipped")


def unpark(db_path: str | Path, ticker: str) -> AdminResult:
    """Allow orders for a parked ticker again (resets its consecutive rejections)."""
    with _transaction(db_path) as conn:
        row = conn.execute("SELECT parked FROM positions WHERE ticker = ?", (ticker,)).fetchone()
        if row is None:
            raise AdminError(f"no position for ticker {ticker!r}")
        conn.execute(
            "UPDATE positions SET parked = 0, consecutive_rejections = 0, updated_at = ?"
            " WHERE ticker = ?",
            (now_text(), ticker),
        )
    if not row[0]:
        return AdminResult(0, f"{ticker} was not parked")
    return AdminResult(1, f"{ticker} unparked")


def _require_status(conn: sqlite3.Connection, event_id: int, status: str, action: str) -> str:
    row = conn.execute("SELECT status, reason FROM events WHERE id = ?", (event_id,)).fetchone()
    if row is None:
        raise AdminError(f"no event {event_id}")
    if row[0] != status:
        raise AdminError(f"cannot {action} event {event_id}: it is {row[0]}, not {status}")
    return str(row[1])


def baseline(db_path: str | Path, ticker: str, *, as_hedged: bool) -> AdminResult:
    """Say what the broker's position in ``ticker`` is (SPEC §5): this bot's earlier hedge
    (``as_hedged``: booked as a FILLED execution of kind ``baseline``, no order) or outside
    this bot (its baseline, used only in drift). The running bot acts on the mark."""
    request = "as-hedged" if as_hedged else "as-outside"
    with _transaction(db_path) as conn:
        conn.execute(
            "INSERT INTO ticker_broker (ticker, baseline_request, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (ticker) DO UPDATE SET baseline_request = excluded.baseline_request,"
            " updated_at = excluded.updated_at",
            (ticker, request, now_text()),
        )
    return AdminResult(1, f"{ticker}: baseline {request} marked; the running bot books it")


def accept_drift(db_path: str | Path, ticker: str) -> AdminResult:
    """Fold the ticker's current drift into its baseline (the running bot acts on the mark)."""
    with _transaction(db_path) as conn:
        row = conn.execute(
            "SELECT drift_shares FROM ticker_broker WHERE ticker = ?", (ticker,)
        ).fetchone()
        if row is None or row[0] is None:
            raise AdminError(f"no drift measured for {ticker!r} (reconciliation has not run)")
        conn.execute(
            "UPDATE ticker_broker SET accept_drift_request = 1, updated_at = ? WHERE ticker = ?",
            (now_text(), ticker),
        )
    return AdminResult(1, f"{ticker}: drift {row[0]} will be accepted into the baseline")
