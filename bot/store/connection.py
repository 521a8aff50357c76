"""Opening the database: pragmas, migrations and the check of what chain it serves.

Durability (``PRAGMA synchronous``): every connection opens at ``FULL``, the commit is on disk
when COMMIT returns. Losing a committed PENDING execution after its order went out, or a FILLED
settlement, would hedge twice or forget a hedge, so the drain's, the admin's, the backfill jobs'
and the runtime's commits stay FULL and are durable before the broker is called. Batching many
events per transaction keeps the cost of the extra fsync small (NOTES.md).

One writer commits at ``NORMAL``: :class:`~bot.store.chain_state.ChainStore` for what a restart
fetches again (raw logs of the canonical chain, recorded block hashes, checkpoint moves, the last
head seen). That is safe because of three facts:

- The database is in WAL mode and every connection shares one WAL file, appended in commit order.
  A power cut loses a suffix of it at most (recovery stops at the first frame whose checksum
  fails), back to its last fsync, and each FULL commit, on any connection, fsyncs it: every
  earlier NORMAL commit is durable once a FULL commit follows it. A process crash loses nothing.
- So a power cut can only lose NORMAL commits made after the last FULL commit. Nothing acted on
  them: the drain reads committed rows and commits FULL before it places an order, which makes
  what it read durable first.
- The checkpoint moves in the transaction of the logs it covers (``reconcile``) or after it
  (``store``, then ``advance``): a lost log is lost with the checkpoint move over it, so the next
  run fetches it again from the checkpoint on (``store`` is idempotent for what survived). A lost
  rollback leaves the checkpoint on the abandoned branch, whose hash the restart re-checks.

What a restart would not fetch again stays FULL on that connection too: dead letters, a late
live log at or below the checkpoint, ``removed: true`` marks and off-chain sightings.
``tests/store/test_wal_truncation.py`` cuts a real backfill's WAL back and restarts on it.
"""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite

from bot.errors import DatabaseMismatchError, DatabaseMissingError
from bot.store.migrations import apply_migrations, check_not_newer, load_migrations
from bot.store.txn import set_synchronous, write_transaction

BUSY_TIMEOUT_MS = 5000


@dataclass(frozen=True, slots=True)
class ServedChain:
    """What the database serves; a config that disagrees is refused (SPEC §8)."""

    chain_id: int
    orderbook: str
    order_owner: str
    deployment_block: int


@dataclass(frozen=True, slots=True)
class StoreMeta:
    served: ServedChain
    instance_id: str
    created_at: str


_ADDRESS_FIELDS = ("orderbook", "order_owner")


async def connect(path: str | Path) -> aiosqlite.Connection:
    """A connection in autocommit mode (transactions are explicit) with the money-safe pragmas."""
    conn = await aiosqlite.connect(str(path), isolation_level=None)
    try:
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        rows = list(await conn.execute_fetchall("PRAGMA journal_mode = WAL"))
        if str(rows[0][0]).lower() != "wal":
            raise DatabaseMismatchError(f"cannot switch {path} to WAL mode (got {rows[0][0]})")
        await set_synchronous(conn, "FULL")
        await conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        await conn.close()
        raise
    return conn


async def open_database(
    path: str | Path, served: ServedChain
) -> tuple[aiosqlite.Connection, StoreMeta]:
    """Connect, migrate, and check (or, on a new database, record) what the database serves."""
    conn = await connect(path)
    try:
        await apply_migrations(conn)
        meta = await _check_or_record_meta(conn, served)
    except BaseException:
        await conn.close()
        raise
    return conn, meta


def _served_items(served: ServedChain) -> dict[str, str]:
    return {
        "chain_id": str(served.chain_id),
        "orderbook": served.orderbook,
        "order_owner": served.order_owner,
        "deployment_block": str(served.deployment_block),
    }


def _same(field: str, stored: str, configured: str) -> bool:
    if field in _ADDRESS_FIELDS:
        return stored.lower() == configured.lower()
    return stored == configured


async def _check_or_record_meta(conn: aiosqlite.Connection, served: ServedChain) -> StoreMeta:
    async with write_transaction(conn):
        rows = await conn.execute_fetchall("SELECT key, value FROM meta")
        stored = {str(k): str(v) for k, v in rows}
        configured = _served_items(served)
        if not stored:
            stored = {
                **configured,
                "instance_id": secrets.token_hex(8),
                "created_at": datetime.now(UTC).isoformat(),
            }
            await conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)", sorted(stored.items())
            )
        else:
            for field, value in configured.items():
                if field not in stored or not _same(field, stored[field], value):
                    raise DatabaseMismatchError(
                        f"the database serves {field}={stored.get(field)!r} but the config says "
                        f"{field}={value!r}; use another database.path or fix the config"
                    )
    return _meta_from(stored)


def _meta_from(stored: dict[str, str]) -> StoreMeta:
    return StoreMeta(
        served=ServedChain(
            chain_id=int(stored["chain_id"]),
            orderbook=stored["orderbook"],
            order_owner=stored["order_owner"],
            deployment_block=int(stored["deployment_block"]),
        ),
        instance_id=stored["instance_id"],
        created_at=stored["created_at"],
    )


def open_readonly(path: str | Path) -> sqlite3.Connection:
    """A read-only connection for status/trades/executions: no lock, no migration, no network.

    Refuses a missing database, one not migrated to this version, and one of a newer version.
    """
    path = Path(path)
    if not path.exists():
        raise DatabaseMissingError(f"no database at {path} (run `bot run` first?)")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _check_schema_current(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def open_admin(path: str | Path) -> sqlite3.Connection:
    """A read-write connection for the admin marks (retry, skip, unpark): no lock, no migration."""
    path = Path(path)
    if not path.exists():
        raise DatabaseMissingError(f"no database at {path} (run `bot run` first?)")
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        _check_schema_current(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def _check_schema_current(conn: sqlite3.Connection, path: Path) -> None:
    known = load_migrations()
    has_table = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    recorded = (
        [int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
        if has_table
        else []
    )
    check_not_newer(recorded, known)
    if recorded != [m.version for m in known]:
        raise DatabaseMismatchError(
            f"{path} has schema versions {recorded}, this version needs 1..{known[-1].version}; "
            "run `bot run` or `bot backfill` once to migrate it"
        )


def read_meta(conn: sqlite3.Connection) -> dict[str, str]:
    return {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM meta")}
