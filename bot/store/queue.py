"""The event queue (SPEC §1, §6): idempotent on ``(tx_hash, log_index)``; the checkpoint and
canonical writes live in :mod:`bot.store.chain_state`.

Functions take an aiosqlite connection in autocommit mode. Those named ``*_in_txn`` expect the
caller's transaction to be open; the others run their own short ``BEGIN IMMEDIATE`` transaction.
A writer that shares its connection with the drain would join the drain's transactions (and lose
its rows on a rollback), so enqueue from a connection of its own.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import aiosqlite
from loguru import logger

from bot.core.abi import UndecodableLog, order_owners_hex
from bot.core.model import EventStatus, RawLog
from bot.errors import QueueRaceError
from bot.store.txn import write_transaction

_CHUNK = 400  # bound on SQL parameters per IN (...) query


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    """One queue row: the raw log plus its processing state."""

    id: int
    raw: RawLog
    status: EventStatus
    inclusion: int
    attempts: int
    reason: str | None


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    inserted: int
    duplicates: int
    conflicts: int  # same (tx_hash, log_index) seen in another block, or delivered removed


def now_text() -> str:
    return datetime.now(UTC).isoformat()


_EVENT_COLUMNS = (
    "id, tx_hash, log_index, block_number, block_hash, tx_index, address, topic0, data, "
    "status, inclusion, attempts, reason"
)


def _event(row: Sequence[object]) -> QueuedEvent:
    (id_, tx, log_index, block, block_hash, tx_index, address, topic0, data) = row[:9]
    status, inclusion, attempts, reason = row[9:]
    raw = RawLog(
        block_number=int(str(block)),
        block_hash=str(block_hash),
        tx_hash=str(tx),
        tx_index=int(str(tx_index)),
        log_index=int(str(log_index)),
        address=str(address),
        topic0=str(topic0),
        data=bytes(data) if isinstance(data, bytes | memoryview) else b"",
    )
    return QueuedEvent(
        id=int(str(id_)),
        raw=raw,
        status=EventStatus(str(status)),
        inclusion=int(str(inclusion)),
        attempts=int(str(attempts)),
        reason=None if reason is None else str(reason),
    )


async def enqueue(conn: aiosqlite.Connection, logs: Iterable[RawLog]) -> EnqueueResult:
    """Insert logs idempotently in one transaction.

    A log already queued is a duplicate (backfill and subscription overlap). The same
    ``(tx_hash, log_index)`` in another block, or a log delivered with ``removed=true``, is a reorg
    signal: the first row is kept as it is (reviving rows is the reorg handling's job), and the
    sighting is recorded in ``event_sightings`` and logged, never dropped silently.
    """
    batch = list(logs)
    live = [log for log in batch if not log.removed]
    removed = [log for log in batch if log.removed]
    now = now_text()
    async with write_transaction(conn):
        inserted = await insert_new_in_txn(conn, live, now)
        sightings = list(removed)
        if inserted < len(live):
            sightings += await _moved_logs(conn, live)
        if sightings:
            await _record_sightings(conn, sightings, now)
    return EnqueueResult(inserted, len(live) - inserted, len(sightings))


def owners_text(log: RawLog) -> str | None:
    """The ``events.owners`` value of a log (migration 0007): its order owners, lowercase and
    comma-separated ('' for an AfterClear), or None when its head cannot be read (the drain
    then reads the row and fails it with the reason)."""
    try:
        return ",".join(order_owners_hex(log))
    except UndecodableLog:
        return None


_OWNER_OF: weakref.WeakKeyDictionary[aiosqlite.Connection, str] = weakref.WeakKeyDictionary()


async def _our_owner(conn: aiosqlite.Connection) -> str | None:
    """The database's order owner, lowercase (meta, written when the engine first opened it).

    Read once per connection, not per insert (a live log is one insert: one round trip less on
    its way to the hedge): once written it never changes, ``open_database`` refuses another."""
    known = _OWNER_OF.get(conn)
    if known is not None:
        return known
    rows = await conn.execute_fetchall("SELECT value FROM meta WHERE key = 'order_owner'")
    found = [str(value).lower() for (value,) in rows]
    if not found:
        return None  # not recorded yet: asked again next time
    _OWNER_OF[conn] = found[0]
    return found[0]


async def insert_new_in_txn(conn: aiosqlite.Connection, logs: Sequence[RawLog], now: str) -> int:
    """Insert the logs not queued yet, with their owners; returns how many were new.

    A log whose owners are known and do not include the database's order owner is stored
    processed (not ours): the drain would only mark it, and that UPDATE would write the whole row
    a second time. Every other log is stored pending (all of them while no owner is recorded)."""
    ours = await _our_owner(conn)
    rows = []
    for log in logs:
        owners = owners_text(log)
        other = ours is not None and owners is not None and ours not in owners
        rows.append(
            (
                log.tx_hash,
                log.log_index,
                log.block_number,
                log.block_hash,
                log.tx_index,
                log.address,
                log.topic0,
                log.data,
                owners,
                now,
                now,
                "processed" if other else "pending",
                0 if other else None,
            )
        )
    before = conn.total_changes
    await conn.executemany(
        "INSERT INTO events (tx_hash, log_index, block_number, block_hash, tx_index, address,"
        " topic0, data, owners, enqueued_at, updated_at, status, is_ours)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (tx_hash, log_index) DO NOTHING",
        rows,
    )
    return conn.total_changes - before


async def _moved_logs(conn: aiosqlite.Connection, logs: list[RawLog]) -> list[RawLog]:
    """Logs whose (tx_hash, log_index) is queued with another block hash."""
    stored: dict[tuple[str, int], str] = {}
    tx_hashes = sorted({log.tx_hash for log in logs})
    for start in range(0, len(tx_hashes), _CHUNK):
        chunk = tx_hashes[start : start + _CHUNK]
        rows = await conn.execute_fetchall(
            "SELECT tx_hash, log_index, block_hash FROM events WHERE tx_hash IN"
            f" ({','.join('?' * len(chunk))})",
            chunk,
        )
        stored.update({(str(tx), int(i)): str(h) for tx, i, h in rows})
    return [
        log
        for log in logs
        if (known := stored.get((log.tx_hash, log.log_index))) is not None
        and known.lower() != log.block_hash.lower()
    ]


async def _record_sightings(conn: aiosqlite.Connection, logs: list[RawLog], now: str) -> None:
    for log in logs:
        logger.warning(
            "reorg signal: log tx={} log_index={} delivered {} block {} ({}); the queued row is "
            "kept until the reorg handling revives or removes it",
            log.tx_hash,
            log.log_index,
            "as removed in" if log.removed else "again in another",
            log.block_number,
            log.block_hash,
        )
    await conn.executemany(
        "INSERT INTO event_sightings (tx_hash, log_index, block_number, block_hash, removed,"
        " seen_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [
            (log.tx_hash, log.log_index, log.block_number, log.block_hash, int(log.removed), now)
            for log in logs
        ],
    )


async def pending_events(
    conn: aiosqlite.Connection, *, up_to_block: int, limit: int
) -> list[QueuedEvent]:
    """Pending events at or below ``up_to_block`` in ``(block_number, log_index)`` order."""
    rows = await conn.execute_fetchall(
        f"SELECT {_EVENT_COLUMNS} FROM events WHERE status = 'pending' AND block_number <= ?"
        " ORDER BY block_number, log_index LIMIT ?",
        (up_to_block, limit),
    )
    return [_event(row) for row in rows]


async def get_event(conn: aiosqlite.Connection, event_id: int) -> QueuedEvent | None:
    rows = list(
        await conn.execute_fetchall(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE id = ?", (event_id,)
        )
    )
    return _event(rows[0]) if rows else None


async def same_tx_logs(conn: aiosqlite.Connection, tx_hash: str) -> list[RawLog]:
    """Every queued, not removed log of one transaction (to find a ClearV2's AfterClear)."""
    rows = await conn.execute_fetchall(
        f"SELECT {_EVENT_COLUMNS} FROM events WHERE tx_hash = ? AND status != 'removed'"
        " ORDER BY log_index",
        (tx_hash,),
    )
    return [_event(row).raw for row in rows]


async def mark_processed_in_txn(
    conn: aiosqlite.Connection, marks: Sequence[tuple[int, bool]]
) -> None:
    """Mark events processed: ``(event_id, is_ours)`` pairs. Each row must still be pending.

    The drain reads its batch before its transaction begins, so the live pump may mark a row
    removed in between; overwriting that mark would book a fill from a dead fork. A row that is
    no longer pending raises :class:`QueueRaceError` (transient): the caller's transaction rolls
    back and the batch is read again.
    """
    if not marks:
        return
    now = now_text()
    before = conn.total_changes
    await conn.executemany(
        "UPDATE events SET status = 'processed', is_ours = ?, reason = NULL, updated_at = ?"
        " WHERE id = ? AND status = 'pending'",
        [(int(ours), now, event_id) for event_id, ours in marks],
    )
    if conn.total_changes - before != len(marks):
        await _raise_race(conn, [event_id for event_id, _ours in marks], "processed")


async def mark_failed_in_txn(
    conn: aiosqlite.Connection, event_id: int, reason: str, *, is_ours: bool | None
) -> None:
    """Mark an event failed with its reason; ``is_ours=None`` when the owner could not be read.

    Like :func:`mark_processed_in_txn`, the row must still be pending (else
    :class:`QueueRaceError`): a removed row is never turned into a failed one."""
    cursor = await conn.execute(
        "UPDATE events SET status = 'failed', reason = ?, attempts = attempts + 1,"
        " is_ours = ?, updated_at = ? WHERE id = ? AND status = 'pending'",
        (reason, None if is_ours is None else int(is_ours), now_text(), event_id),
    )
    if cursor.rowcount != 1:
        await _raise_race(conn, [event_id], "failed")


async def _raise_race(conn: aiosqlite.Connection, event_ids: Sequence[int], mark: str) -> None:
    wanted = sorted(set(event_ids))
    found: dict[int, str] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        rows = await conn.execute_fetchall(
            f"SELECT id, status FROM events WHERE id IN ({','.join('?' * len(chunk))})", chunk
        )
        found.update({int(i): str(status) for i, status in rows})
    moved = {i: found.get(i, "missing") for i in wanted if found.get(i) != "pending"}
    if len(wanted) != len(event_ids):
        moved = moved or {i: "marked twice" for i in wanted}
    detail = ", ".join(f"event {i} is {status}" for i, status in sorted(moved.items()))
    logger.warning("queue race: cannot mark {}: {}; the batch is read again", mark, detail)
    raise QueueRaceError(f"cannot mark {mark}: {detail} (no longer pending)")


async def retry_failed(conn: aiosqlite.Connection, event_id: int | None = None) -> int:
    """Failed events (one or all) back to pending; returns how many. Own transaction."""
    where, params = "status = 'failed'", list[int]()
    if event_id is not None:
        where, params = "status = 'failed' AND id = ?", [event_id]
    async with write_transaction(conn):
        cursor = await conn.execute(
            f"UPDATE events SET status = 'pending', updated_at = ? WHERE {where}",
            (now_text(), *params),
        )
    return cursor.rowcount


async def status_counts(conn: aiosqlite.Connection) -> dict[str, int]:
    rows = await conn.execute_fetchall("SELECT status, COUNT(*) FROM events GROUP BY status")
    counts = {status.value: 0 for status in EventStatus}
    counts.update({str(s): int(n) for s, n in rows})
    return counts
