"""Finding 7: a queue mark never overwrites a status another writer set in between (SPEC §7)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from bot.errors import QueueRaceError, TransientError
from bot.store import queue
from bot.store.connection import open_database
from tests.store.test_queue import SERVED, log


@pytest.fixture
async def conn(db_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    connection, _ = await open_database(db_path, SERVED)
    yield connection
    await connection.close()


async def _status(conn: aiosqlite.Connection, event_id: int) -> str:
    rows = list(await conn.execute_fetchall("SELECT status FROM events WHERE id = ?", (event_id,)))
    return str(rows[0][0])


@pytest.mark.parametrize("mark", ["processed", "failed"])
async def test_a_removed_mark_written_between_read_and_commit_is_never_overwritten(
    conn: aiosqlite.Connection, db_path: Path, mark: str
) -> None:
    """The drain reads pending rows, the live pump marks one removed (its block left the
    chain), then the drain writes its marks: the removed mark stands, and the drain's
    transaction fails (transient) so that its batch is read again."""
    await queue.enqueue(conn, [log(1, 0), log(2, 0)])
    ids = [e.id for e in await queue.pending_events(conn, up_to_block=10, limit=10)]
    pump = sqlite3.connect(str(db_path), isolation_level=None)  # the live pump's connection
    try:
        pump.execute("UPDATE events SET status = 'removed' WHERE id = ?", (ids[1],))
    finally:
        pump.close()
    await conn.execute("BEGIN IMMEDIATE")
    with pytest.raises(QueueRaceError, match=f"event {ids[1]} is removed"):
        if mark == "processed":
            await queue.mark_processed_in_txn(conn, [(ids[0], True), (ids[1], True)])
        else:
            await queue.mark_failed_in_txn(conn, ids[1], "boom", is_ours=True)
    await conn.execute("ROLLBACK")  # what the drain does on any exception
    assert [await _status(conn, i) for i in ids] == ["pending", "removed"]
    assert issubclass(QueueRaceError, TransientError)
    # the batch read again holds only the row still pending; marking it works
    again = await queue.pending_events(conn, up_to_block=10, limit=10)
    assert [e.id for e in again] == [ids[0]]
    await conn.execute("BEGIN IMMEDIATE")
    await queue.mark_processed_in_txn(conn, [(ids[0], True)])
    await conn.execute("COMMIT")
    assert [await _status(conn, i) for i in ids] == ["processed", "removed"]


async def test_marking_a_row_twice_in_one_batch_is_a_race_too(conn: aiosqlite.Connection) -> None:
    await queue.enqueue(conn, [log(1, 0)])
    (event,) = await queue.pending_events(conn, up_to_block=10, limit=10)
    await conn.execute("BEGIN IMMEDIATE")
    with pytest.raises(QueueRaceError):
        await queue.mark_processed_in_txn(conn, [(event.id, False), (event.id, False)])
    await conn.execute("ROLLBACK")
    assert await _status(conn, event.id) == "pending"
