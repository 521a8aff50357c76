"""One short write transaction on an autocommit aiosqlite connection, and the connection's
durability level (``PRAGMA synchronous``, see :mod:`bot.store.connection` for the rule)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

import aiosqlite

Synchronous = Literal["NORMAL", "FULL"]
"""``FULL``: the commit is on disk when COMMIT returns. ``NORMAL`` (WAL mode): it survives a
process crash; a power cut loses it unless the WAL was synced after it (by any later FULL commit
on any connection, or a checkpoint). What a power cut loses is always a suffix of the WAL:
recovery replays its frames in order and stops at the first one whose checksum fails."""


async def set_synchronous(conn: aiosqlite.Connection, level: Synchronous) -> None:
    """Set the level of the connection's next commits (outside a transaction: SQLite refuses
    to change it inside one)."""
    await conn.execute(f"PRAGMA synchronous = {level}")


@asynccontextmanager
async def write_transaction(conn: aiosqlite.Connection) -> AsyncIterator[aiosqlite.Connection]:
    """``BEGIN IMMEDIATE`` (the write lock up front, so a busy database waits here rather than
    failing mid-way), ``COMMIT`` on success, ``ROLLBACK`` on any exception or cancellation."""
    await conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        await conn.execute("COMMIT")
    except BaseException:
        await conn.execute("ROLLBACK")
        raise
