"""The event queue: idempotent enqueue, (block, log_index) order, marks, retry/skip, checkpoint."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from bot.core.heads import BlockRef, Head
from bot.core.model import EventStatus, RawLog
from bot.devnet.synthetic import (
    AAPL,
    USDC,
    At,
    address_of,
    clear_logs,
    make_io,
    make_order,
    take_order_log,
)
from bot.store import admin, queue
from bot.store.admin import AdminError
from bot.store.chain_state import ChainStore
from bot.store.connection import ServedChain, connect, open_database
from bot.store.migrations import apply_migrations

SERVED = ServedChain(31337, "0x" + "11" * 20, "0x" + "22" * 20, 0)


def log(block: int, index: int, *, block_hash: str | None = None, removed: bool = False) -> RawLog:
    return RawLog(
        block_number=block,
        block_hash=block_hash or f"0x{block:064x}",
        tx_hash=f"0x{block * 1000 + index:064x}",
        tx_index=0,
        log_index=index,
        address="0x" + "11" * 20,
        topic0="0x" + "ab" * 32,
        data=bytes([block % 256, index % 256]) * 3,
        removed=removed,
    )


@pytest.fixture
async def conn(db_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    connection, _ = await open_database(db_path, SERVED)
    yield connection
    await connection.close()


def _rows(db_path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db_path) as raw:
        return list(raw.execute(sql))


async def test_enqueue_is_idempotent_on_tx_hash_and_log_index(
    conn: aiosqlite.Connection, db_path: Path
) -> None:
    logs = [log(5, 0), log(5, 1), log(6, 0)]
    first = await queue.enqueue(conn, logs)
    again = await queue.enqueue(conn, [*logs, log(7, 0)])
    assert (first.inserted, first.duplicates, first.conflicts) == (3, 0, 0)
    assert (again.inserted, again.duplicates, again.conflicts) == (1, 3, 0)
    assert _rows(db_path, "SELECT COUNT(*) FROM events") == [(4,)]
    stored = await queue.pending_events(conn, up_to_block=100, limit=10)
    assert [e.raw for e in stored] == [*logs, log(7, 0)]  # byte-exact round trip
    assert all(e.status is EventStatus.PENDING and e.inclusion == 0 for e in stored)


async def test_redelivery_in_another_block_keeps_the_first_and_records_the_sighting(
    conn: aiosqlite.Connection, db_path: Path
) -> None:
    await queue.enqueue(conn, [log(5, 0)])
    moved = log(5, 0, block_hash="0x" + "ee" * 32)
    result = await queue.enqueue(conn, [moved, log(5, 1, removed=True)])
    assert (result.inserted, result.duplicates, result.conflicts) == (0, 1, 2)
    assert _rows(db_path, "SELECT block_hash FROM events") == [(log(5, 0).block_hash,)]
    assert _rows(
        db_path, "SELECT log_index, block_hash, removed FROM event_sightings ORDER BY log_index"
    ) == [(0, "0x" + "ee" * 32, 0), (1, log(5, 1).block_hash, 1)]
    again = await queue.enqueue(conn, [moved])  # seen again: still one sighting row
    assert again.conflicts == 1
    assert _rows(db_path, "SELECT COUNT(*) FROM event_sightings") == [(2,)]


async def test_pending_in_block_then_log_index_order_up_to_the_bound(
    conn: aiosqlite.Connection,
) -> None:
    await queue.enqueue(conn, [log(9, 0), log(3, 7), log(3, 2), log(12, 0), log(9, 1)])
    pending = await queue.pending_events(conn, up_to_block=9, limit=10)
    assert [(e.raw.block_number, e.raw.log_index) for e in pending] == [
        (3, 2),
        (3, 7),
        (9, 0),
        (9, 1),
    ]
    limited = await queue.pending_events(conn, up_to_block=100, limit=2)
    assert [(e.raw.block_number, e.raw.log_index) for e in limited] == [(3, 2), (3, 7)]


async def test_marks_processed_failed_retry_and_skip(
    conn: aiosqlite.Connection, db_path: Path
) -> None:
    await queue.enqueue(conn, [log(1, 0), log(2, 0), log(3, 0)])
    ids = [e.id for e in await queue.pending_events(conn, up_to_block=10, limit=10)]
    await conn.execute("BEGIN IMMEDIATE")
    await queue.mark_processed_in_txn(conn, [(ids[0], False)])
    await queue.mark_failed_in_txn(conn, ids[1], "boom", is_ours=True)
    await queue.mark_failed_in_txn(conn, ids[2], "unreadable", is_ours=None)
    await conn.execute("COMMIT")
    assert _rows(db_path, "SELECT status, is_ours, reason, attempts FROM events ORDER BY id") == [
        ("processed", 0, None, 0),
        ("failed", 1, "boom", 1),
        ("failed", None, "unreadable", 1),
    ]
    assert [e.id for e in await queue.pending_events(conn, up_to_block=10, limit=10)] == []

    assert admin.retry(db_path, ids[1]).changed == 1
    assert admin.skip(db_path, ids[2], "operator checked it by hand").changed == 1
    assert _rows(db_path, "SELECT status, attempts FROM events ORDER BY id") == [
        ("processed", 0),
        ("pending", 1),
        ("skipped", 1),
    ]
    reason = _rows(db_path, f"SELECT reason FROM events WHERE id = {ids[2]}")[0][0]
    assert reason == "skipped by operator: operator checked it by hand (failure was: unreadable)"
    with pytest.raises(AdminError, match="it is pending, not failed"):
        admin.skip(db_path, ids[1], "x")
    with pytest.raises(AdminError, match="no event 99"):
        admin.retry(db_path, 99)
    with pytest.raises(AdminError, match="needs a reason"):
        admin.skip(db_path, ids[1], "  ")

    await conn.execute("BEGIN IMMEDIATE")
    await queue.mark_failed_in_txn(conn, ids[1], "again", is_ours=True)
    await conn.execute("COMMIT")
    assert await queue.retry_failed(conn) == 1  # what `run` does at start
    assert _rows(db_path, f"SELECT status, attempts, reason FROM events WHERE id = {ids[1]}") == [
        ("pending", 2, "again")
    ]
    assert admin.retry(db_path).changed == 0


async def test_checkpoint_get_and_set(conn: aiosqlite.Connection) -> None:
    store = ChainStore(conn)
    assert await store.checkpoint() is None
    await store.advance(Head(10, "0x" + "aa" * 32, "0x" + "00" * 32))
    await store.advance(Head(12, "0x" + "bb" * 32, "0x" + "00" * 32))
    assert await store.checkpoint() == BlockRef(12, "0x" + "bb" * 32)


async def test_status_counts(conn: aiosqlite.Connection) -> None:
    await queue.enqueue(conn, [log(1, 0), log(2, 0)])
    assert await queue.status_counts(conn) == {
        "pending": 2,
        "processed": 0,
        "removed": 0,
        "failed": 0,
        "skipped": 0,
    }


def test_pause_query_uses_the_attention_index(db_path: Path) -> None:
    import asyncio

    async def make() -> None:
        c, _ = await open_database(db_path, SERVED)
        await c.close()

    asyncio.run(make())
    from bot.store.ledger import PAUSE_REASONS_SQL

    plan = _rows(db_path, f"EXPLAIN QUERY PLAN {PAUSE_REASONS_SQL}")
    assert any("events_attention" in str(row[-1]) for row in plan), plan


async def test_each_row_is_stored_with_the_owners_of_its_orders(
    conn: aiosqlite.Connection, db_path: Path
) -> None:
    ours, theirs = address_of("owner-a"), address_of("owner-b")
    take = take_order_log(
        make_order(ours, [make_io(USDC)], [make_io(AAPL)]),
        input=1,
        output=2,
        at=At(block_number=1),
    )
    clear, after = clear_logs(
        make_order(theirs, [make_io(USDC)], [make_io(AAPL)]),
        make_order(ours, [make_io(AAPL)], [make_io(USDC)]),
        alice_input=1, alice_output=2, bob_input=2, bob_output=1,
        at=At(block_number=2),
    )  # fmt: skip
    await queue.enqueue(conn, [take, clear, after, log(3, 0)])
    assert _rows(db_path, "SELECT block_number, log_index, owners FROM events ORDER BY id") == [
        (1, 0, ours.lower()),
        (2, 0, f"{theirs.lower()},{ours.lower()}"),
        (2, 1, ""),  # an AfterClear names no order
        (3, 0, None),  # unknown topic0: the drain reads it and fails it with the reason
    ]


async def test_a_writer_opened_before_the_owner_is_recorded_classifies_once_it_is(
    db_path: Path,
) -> None:
    ours, theirs = address_of("owner-a"), address_of("owner-b")

    def take(owner: str, block: int) -> RawLog:
        order = make_order(owner, [make_io(USDC)], [make_io(AAPL)])
        return take_order_log(order, input=1, output=2, at=At(block_number=block))

    writer = await connect(db_path)  # the chain writer's own connection, first on a new file
    try:
        await apply_migrations(writer)
        await queue.enqueue(writer, [take(theirs, 1)])  # no owner recorded yet: pending
        engine_conn, _ = await open_database(db_path, ServedChain(31337, "0x" + "11" * 20, ours, 0))
        await engine_conn.close()
        await queue.enqueue(writer, [take(theirs, 2), take(ours, 3)])
        await queue.enqueue(writer, [take(theirs, 4)])  # the owner read once, kept
    finally:
        await writer.close()
    assert _rows(db_path, "SELECT block_number, status, is_ours FROM events ORDER BY id") == [
        (1, "pending", None),
        (2, "processed", 0),
        (3, "pending", None),
        (4, "processed", 0),
    ]
