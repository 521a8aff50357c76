"""What the database keeps about the broker (SPEC §5): which one it hedges with, per-ticker
broker state (baselines, drift, the operator's marks) and what ``run`` last learned, for
``status`` (which makes no network call)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiosqlite

from bot.core import amounts
from bot.errors import ConfigError
from bot.store.queue import now_text
from bot.store.txn import write_transaction


@dataclass(frozen=True, slots=True)
class BrokerIdentity:
    kind: str
    host: str
    account_id: str


async def check_or_record_identity(conn: aiosqlite.Connection, identity: BrokerIdentity) -> bool:
    """Record the broker on a new database (True), or refuse another one (``ConfigError``)."""
    async with write_transaction(conn):
        rows = list(await conn.execute_fetchall("SELECT kind, host, account_id FROM broker_meta"))
        if not rows:
            await conn.execute(
                "INSERT INTO broker_meta (id, kind, host, account_id, created_at)"
                " VALUES (1, ?, ?, ?, ?)",
                (identity.kind, identity.host, identity.account_id, now_text()),
            )
            return True
    stored = BrokerIdentity(*(str(v) for v in rows[0]))
    if stored != identity:
        raise ConfigError(
            f"this database hedges with broker {stored.kind} at {stored.host} (account "
            f"{stored.account_id}), but the config points at {identity.kind} at {identity.host} "
            f"(account {identity.account_id}): a database never moves to another broker or "
            "account (a paper database must not drive a live one); use another database.path"
        )
    return False


@dataclass(slots=True)
class TickerBroker:
    ticker: str
    awaiting_baseline: str | None = None  # why orders wait for `bot baseline`
    baseline_request: str | None = None  # 'as-hedged' | 'as-outside' (written by the CLI)
    baseline_shares: Decimal = amounts.ZERO
    accept_drift_request: bool = False
    broker_position_shares: Decimal | None = None
    drift_shares: Decimal | None = None
    drift_checks: int = 0


def _dec(value: object) -> Decimal | None:
    return None if value is None else amounts.from_text(str(value))


def _text(value: Decimal | None) -> str | None:
    return None if value is None else amounts.to_text(value)


async def load_tickers(conn: aiosqlite.Connection) -> dict[str, TickerBroker]:
    rows = await conn.execute_fetchall(
        "SELECT ticker, awaiting_baseline, baseline_request, baseline_shares,"
        " accept_drift_request, broker_position_shares, drift_shares, drift_checks"
        " FROM ticker_broker"
    )
    found = {}
    for t, waiting, request, base, accept, position, drift, checks in rows:
        found[str(t)] = TickerBroker(
            ticker=str(t),
            awaiting_baseline=None if waiting is None else str(waiting),
            baseline_request=None if request is None else str(request),
            baseline_shares=_dec(base) or amounts.ZERO,
            accept_drift_request=bool(accept),
            broker_position_shares=_dec(position),
            drift_shares=_dec(drift),
            drift_checks=int(checks),
        )
    return found


async def save_ticker_in_txn(conn: aiosqlite.Connection, state: TickerBroker) -> None:
    """Upsert what the bot owns of a ticker's row; the operator's marks are left as they are
    (the CLI may write one at any moment): :func:`consume_marks_in_txn` clears them."""
    await conn.execute(
        "INSERT INTO ticker_broker (ticker, awaiting_baseline, baseline_shares,"
        " broker_position_shares, drift_shares, drift_checks, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (ticker) DO UPDATE SET"
        " awaiting_baseline = excluded.awaiting_baseline,"
        " baseline_shares = excluded.baseline_shares,"
        " broker_position_shares = excluded.broker_position_shares,"
        " drift_shares = excluded.drift_shares, drift_checks = excluded.drift_checks,"
        " updated_at = excluded.updated_at",
        (
            state.ticker,
            state.awaiting_baseline,
            amounts.to_text(state.baseline_shares),
            _text(state.broker_position_shares),
            _text(state.drift_shares),
            state.drift_checks,
            now_text(),
        ),
    )


async def consume_marks_in_txn(conn: aiosqlite.Connection, ticker: str) -> None:
    """The bot acted on the operator's ``baseline``/``accept-drift`` marks of ``ticker``."""
    await conn.execute(
        "UPDATE ticker_broker SET baseline_request = NULL, accept_drift_request = 0,"
        " updated_at = ? WHERE ticker = ?",
        (now_text(), ticker),
    )


async def save_runtime(conn: aiosqlite.Connection, values: dict[str, Any]) -> None:
    """Store JSON values under their keys (one short transaction)."""
    async with write_transaction(conn):
        await conn.executemany(
            "INSERT INTO broker_runtime (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [(key, json.dumps(value)) for key, value in values.items()],
        )
