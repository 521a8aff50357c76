"""The queue's side of following the chain (SPEC §6, §7): canonical writes, reconciliation of a
head, rollback to a fork point, and the checkpoint with the headers it moved over.

It owns its own connection (the writer's), separate from the drain's: every transaction here is
short, serialised by one asyncio lock, and SQLite (WAL, busy timeout) orders it against the
drain's. The drain only reads events at or below the checkpoint, which moves here only after
the block's logs are stored.

Canonical writes: a log fetched from the canonical chain (backfill window, or a head's
``blockHash``) is stored as is; a queued row with the same ``(tx_hash, log_index)`` that was
removed is revived (new block, ``inclusion`` + 1, pending); one that sits in another block is
the trace of a reorg we had not seen: it is removed (flagged for compensation when it was
processed) and revived in the canonical block.

Hash evidence only (SPEC §7): a row is removed when the canonical header at its height has another
hash (``reconcile``; ``advance`` over blocks recorded by ``record_blocks``; ``rollback`` with the
hashes the fork-point walk read) or when the provider sent it ``removed: true``. A row missing
from an answer is never removed here. ``recent_blocks`` keeps the canonical hash of every block
within ``RECENT_BLOCKS_KEPT`` of the checkpoint, so a fork-point walk stops at the real fork.

Durability (the rule and why it is safe: :mod:`bot.store.connection`): what a restart fetches
again commits at ``synchronous=NORMAL`` (canonical logs, recorded hashes, checkpoint moves and
rollbacks, live hints above the checkpoint, the last head); what it would not commits at
``FULL`` (dead letters, a late hint at or below the checkpoint, ``removed: true`` marks,
off-chain sightings). A power cut can then lose only a suffix of NORMAL commits, the checkpoint
moves among them: the checkpoint moves in the transaction of the logs it covers or after it,
never before. The level is set per transaction, only when it changes, which is why this store
must own its connection (no other code may write on it).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiosqlite
from loguru import logger

from bot.core.heads import BlockRef, Head
from bot.core.model import RawLog
from bot.store.connection import connect
from bot.store.queue import enqueue, insert_new_in_txn, now_text
from bot.store.txn import Synchronous, set_synchronous, write_transaction

RECENT_BLOCKS_KEPT = 256
"""Canonical hashes kept below the checkpoint: the deepest reorg we can follow."""
_CHUNK = 400

QueuedKey = tuple[str, int, int, str]
"""(tx_hash, log_index, block_number, block_hash) of a queue row."""

_REMOVE = (
    "UPDATE events SET compensate = CASE WHEN status = 'processed' THEN 1 ELSE compensate END,"
    " status = 'removed', updated_at = ?"
)


class ChainStore:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        self._synchronous: Synchronous | None = None  # as last set here (None: not yet)

    @classmethod
    async def open(cls, path: str | Path) -> ChainStore:
        """A store on a connection of its own (the levels it sets must not reach another
        writer); close it with ``store.connection.close()``."""
        return cls(await connect(path))

    @property
    def connection(self) -> aiosqlite.Connection:
        return self._conn

    # ---------------------------------------------------------------- reads

    async def checkpoint(self) -> BlockRef | None:
        rows = list(
            await self._conn.execute_fetchall("SELECT block_number, block_hash FROM checkpoint")
        )
        return BlockRef(int(rows[0][0]), str(rows[0][1])) if rows else None

    async def known_hash(self, number: int) -> str | None:
        rows = list(
            await self._conn.execute_fetchall(
                "SELECT hash FROM recent_blocks WHERE number = ?", (number,)
            )
        )
        if rows:
            return str(rows[0][0])
        checkpoint = await self.checkpoint()
        if checkpoint is not None and checkpoint.number == number:
            return checkpoint.hash
        return None

    async def queued_between(self, first: int, last: int) -> list[QueuedKey]:
        rows = await self._conn.execute_fetchall(
            "SELECT tx_hash, log_index, block_number, block_hash FROM events"
            " WHERE block_number BETWEEN ? AND ? AND status != 'removed'"
            " ORDER BY block_number, log_index",
            (first, last),
        )
        return [(str(t), int(i), int(n), str(h)) for t, i, n, h in rows]

    async def first_unlinked(self) -> int | None:
        rows = await self._conn.execute_fetchall(
            "SELECT b.number FROM recent_blocks b JOIN recent_blocks below"
            " ON below.number = b.number - 1"
            " WHERE b.parent_hash != '' AND b.parent_hash != below.hash"
            " AND b.number <= (SELECT block_number FROM checkpoint)"
            " ORDER BY b.number LIMIT 1"
        )
        found = list(rows)
        return int(found[0][0]) if found else None

    # ---------------------------------------------------------------- live hints

    async def store_hint(self, logs: list[RawLog]) -> int:
        """Logs from the subscription: inserted if new, never changing a queued row (the head
        reconciliation is the record); ``removed: true`` marks the matching row removed.

        A late hint at or below the checkpoint is inserted only when its block hash is the
        canonical one we hold; otherwise it is recorded as a sighting, never queued (the drain
        would book it: the checkpoint already vouches for every log up to it). Hints above the
        checkpoint commit at NORMAL (a restart fetches their blocks again), the rest at FULL."""
        removed = [log for log in logs if log.removed]
        fresh = [log for log in logs if not log.removed]
        inserted = 0
        async with self._lock:
            late = False
            if fresh:
                fresh, late = await self._drop_late_off_chain(fresh)
            if fresh:
                await self._use("FULL" if late else "NORMAL")
                inserted = (await enqueue(self._conn, fresh)).inserted
            if removed:
                await self._in_txn(self._mark_removed_logs, removed, durable=True)
        return inserted

    async def _drop_late_off_chain(self, logs: list[RawLog]) -> tuple[list[RawLog], bool]:
        """``logs`` without the late ones whose block is not canonical (those are recorded),
        and whether a late one is kept."""
        checkpoint = await self.checkpoint()
        if checkpoint is None:
            return logs, False
        kept: list[RawLog] = []
        off_chain: list[RawLog] = []
        late_kept = False
        for log in logs:
            late = log.block_number <= checkpoint.number
            if not late or await self.known_hash(log.block_number) == log.block_hash:
                kept.append(log)
                late_kept = late_kept or late
            else:
                off_chain.append(log)
        if off_chain:
            await self._in_txn(self._record_off_chain_hints, off_chain, durable=True)
        return kept, late_kept

    async def _record_off_chain_hints(self, logs: list[RawLog]) -> None:
        now = now_text()
        for log in logs:
            logger.warning(
                "late live log tx={} log_index={} of block {} ({}) at or below the checkpoint"
                " is not on the canonical chain: recorded, not queued",
                log.tx_hash,
                log.log_index,
                log.block_number,
                log.block_hash[:10],
            )
        await self._conn.executemany(
            "INSERT INTO event_sightings (tx_hash, log_index, block_number, block_hash, removed,"
            " seen_at) VALUES (?, ?, ?, ?, 0, ?) ON CONFLICT DO NOTHING",
            [(log.tx_hash, log.log_index, log.block_number, log.block_hash, now) for log in logs],
        )

    async def dead_letter(self, source: str, payload: Any, reason: str) -> None:
        async with self._lock:
            await self._in_txn(self._insert_dead_letter, source, payload, reason, durable=True)

    # ---------------------------------------------------------------- canonical writes

    async def store(self, logs: list[RawLog]) -> int:
        """Backfill sink: store canonical logs (one transaction); rows newly stored/revived."""
        if not logs:
            return 0
        async with self._lock:
            result: int = await self._in_txn(self._store_canonical, logs)
            return result

    async def advance(self, head: Head) -> None:
        """Backfill sink: every log up to ``head`` is stored; move the checkpoint to it,
        removing the rows it moves over whose height has another recorded canonical hash."""
        async with self._lock:
            await self._in_txn(self._advance, head)

    async def record_blocks(self, headers: Sequence[Head]) -> None:
        """Canonical blocks read from the chain (a window's headers), recorded before the
        checkpoint moves over them; a header with an empty parent hash records a hash only."""
        if not headers:
            return
        async with self._lock:
            await self._in_txn(self._record_blocks, headers)

    async def reconcile(self, head: Head, logs: list[RawLog]) -> int:
        async with self._lock:
            result: int = await self._in_txn(self._reconcile, head, logs)
            return result

    async def rollback(self, ancestor: BlockRef, canonical: Mapping[int, str]) -> int:
        async with self._lock:
            result: int = await self._in_txn(self._rollback, ancestor, canonical)
            return result

    async def record_head(self, head: Head) -> None:
        async with self._lock:
            await self._in_txn(self._record_head, head)

    # ---------------------------------------------------------------- transaction bodies

    async def _in_txn(self, body: Any, *args: Any, durable: bool = False) -> Any:
        """``body(*args)`` in one write transaction, committed at FULL when ``durable`` (a
        restart would not write it again), else at NORMAL."""
        await self._use("FULL" if durable else "NORMAL")
        async with write_transaction(self._conn):
            return await body(*args)

    async def _use(self, level: Synchronous) -> None:
        if self._synchronous != level:
            await set_synchronous(self._conn, level)
            self._synchronous = level

    async def _existing(self, logs: Iterable[RawLog]) -> dict[tuple[str, int], tuple[str, str]]:
        """(tx_hash, log_index) -> (block_hash, status) of queued rows among ``logs``."""
        found: dict[tuple[str, int], tuple[str, str]] = {}
        tx_hashes = sorted({log.tx_hash for log in logs})
        for start in range(0, len(tx_hashes), _CHUNK):
            chunk = tx_hashes[start : start + _CHUNK]
            rows = await self._conn.execute_fetchall(
                "SELECT tx_hash, log_index, block_hash, status FROM events WHERE tx_hash IN"
                f" ({','.join('?' * len(chunk))})",
                chunk,
            )
            found.update({(str(t), int(i)): (str(h), str(s)) for t, i, h, s in rows})
        return found

    async def _store_canonical(self, logs: list[RawLog]) -> int:
        existing = await self._existing(logs)
        now = now_text()
        new = [log for log in logs if (log.tx_hash, log.log_index) not in existing]
        changed = 0
        for log in logs:
            known = existing.get((log.tx_hash, log.log_index))
            if known is None:
                continue
            block_hash, status = known
            if block_hash == log.block_hash and status != "removed":
                continue  # the same row: backfill and subscription overlap
            if status != "removed":
                await self._conn.execute(
                    f"{_REMOVE} WHERE tx_hash = ? AND log_index = ?",
                    (now, log.tx_hash, log.log_index),
                )
            # revive in the canonical block: a new inclusion, processed again from scratch
            await self._conn.execute(
                "UPDATE events SET status = 'pending', inclusion = inclusion + 1,"
                " block_number = ?, block_hash = ?, tx_index = ?, topic0 = ?, data = ?,"
                " reason = NULL, attempts = 0, is_ours = NULL, owners = NULL, updated_at = ?"
                " WHERE tx_hash = ? AND log_index = ?",
                (
                    log.block_number,
                    log.block_hash,
                    log.tx_index,
                    log.topic0,
                    log.data,
                    now,
                    log.tx_hash,
                    log.log_index,
                ),
            )
            changed += 1
        return changed + await insert_new_in_txn(self._conn, new, now)

    async def _record_blocks(self, headers: Sequence[Head]) -> None:
        # records above the checkpoint are only ever those of the window about to be moved over:
        # any other is a leftover of an interrupted run, from a chain that may have moved since
        await self._conn.execute(
            "DELETE FROM recent_blocks WHERE number > (SELECT block_number FROM checkpoint)"
        )
        await self._conn.executemany(
            "INSERT INTO recent_blocks (number, hash, parent_hash) VALUES (?, ?, ?)"
            " ON CONFLICT (number) DO UPDATE SET hash = excluded.hash,"
            " parent_hash = CASE WHEN excluded.parent_hash = '' AND hash = excluded.hash"
            " THEN parent_hash ELSE excluded.parent_hash END",
            [(header.number, header.hash, header.parent_hash) for header in headers],
        )

    async def _advance(self, head: Head) -> None:
        checkpoint = await self.checkpoint()
        after = -1 if checkpoint is None else checkpoint.number
        await self._conn.execute(
            f"{_REMOVE} WHERE block_number > ? AND block_number <= ? AND status != 'removed'"
            " AND EXISTS (SELECT 1 FROM recent_blocks r WHERE r.number = events.block_number"
            " AND r.hash != events.block_hash)",
            (now_text(), after, head.number),
        )
        await self._conn.execute(
            f"{_REMOVE} WHERE block_number = ? AND block_hash != ? AND status != 'removed'",
            (now_text(), head.number, head.hash),
        )
        await self._move_checkpoint(head)

    async def _move_checkpoint(self, head: Head) -> None:
        now = now_text()
        await self._conn.execute(
            "INSERT INTO checkpoint (id, block_number, block_hash, updated_at) VALUES (1, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET block_number = excluded.block_number,"
            " block_hash = excluded.block_hash, updated_at = excluded.updated_at",
            (head.number, head.hash, now),
        )
        await self._conn.execute(
            "INSERT INTO recent_blocks (number, hash, parent_hash) VALUES (?, ?, ?)"
            " ON CONFLICT (number) DO UPDATE SET hash = excluded.hash,"
            " parent_hash = excluded.parent_hash",
            (head.number, head.hash, head.parent_hash),
        )
        await self._conn.execute(
            "DELETE FROM recent_blocks WHERE number <= ?", (head.number - RECENT_BLOCKS_KEPT,)
        )

    async def _reconcile(self, head: Head, logs: list[RawLog]) -> int:
        foreign = [log for log in logs if log.block_hash != head.hash]
        if foreign:
            raise ValueError(f"reconcile of block {head.number}: a log of another block hash")
        await self._conn.execute(
            f"{_REMOVE} WHERE block_number = ? AND block_hash != ? AND status != 'removed'",
            (now_text(), head.number, head.hash),
        )
        stored = await self._store_canonical(logs)
        await self._move_checkpoint(head)
        return stored

    async def _rollback(self, ancestor: BlockRef, canonical: Mapping[int, str]) -> int:
        removed = 0
        now = now_text()
        for number, block_hash in canonical.items():
            if number <= ancestor.number:
                continue
            cursor = await self._conn.execute(
                f"{_REMOVE} WHERE block_number = ? AND block_hash != ? AND status != 'removed'",
                (now, number, block_hash),
            )
            removed += cursor.rowcount
        await self._conn.execute("DELETE FROM recent_blocks WHERE number > ?", (ancestor.number,))
        await self._conn.execute(
            "UPDATE checkpoint SET block_number = ?, block_hash = ?, updated_at = ?",
            (ancestor.number, ancestor.hash, now_text()),
        )
        return removed

    async def _mark_removed_logs(self, logs: list[RawLog]) -> None:
        now = now_text()
        for log in logs:
            await self._conn.execute(
                f"{_REMOVE} WHERE tx_hash = ? AND log_index = ? AND block_hash = ?"
                " AND status != 'removed'",
                (now, log.tx_hash, log.log_index, log.block_hash),
            )

    async def _insert_dead_letter(self, source: str, payload: Any, reason: str) -> None:
        await self._conn.execute(
            "INSERT INTO dead_letters (source, payload, reason, received_at) VALUES (?, ?, ?, ?)",
            (source, json.dumps(payload, default=str), reason, now_text()),
        )

    async def _record_head(self, head: Head) -> None:
        # status reads head_block from meta (the last head `run` received)
        await self._conn.execute(
            "INSERT INTO meta (key, value) VALUES ('head_block', ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(head.number),),
        )
