"""What ``run`` knows about its provider, kept where ``status`` can read it without a network
call (SPEC §8, §9): the provider in use (a redacted URL) and, while there is any, the trouble
it is waiting out (SPEC §7).

The values live in the ``meta`` table under ``runtime.*`` keys, written only once the database
records what it serves (a database that records nothing yet would otherwise look like one that
serves another chain).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from bot.store.connection import open_readonly
from bot.store.txn import write_transaction

PROVIDER_KEY = "runtime.provider"
TROUBLE_KEY = "runtime.provider_trouble"


@dataclass(frozen=True, slots=True)
class ProviderState:
    provider: str | None
    trouble: str | None


async def save_provider_state(conn: aiosqlite.Connection, state: ProviderState) -> bool:
    """Store ``state`` in one short transaction; False (nothing written) while the database
    does not record what it serves yet."""
    async with write_transaction(conn):
        rows = await conn.execute_fetchall("SELECT 1 FROM meta WHERE key = 'chain_id'")
        if not list(rows):
            return False
        for key, value in ((PROVIDER_KEY, state.provider), (TROUBLE_KEY, state.trouble)):
            if value is None:
                await conn.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                await conn.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )
    return True


def read_provider_state(conn: sqlite3.Connection) -> ProviderState:
    """What ``run`` last stored (both None before it ever did)."""
    values = dict(
        conn.execute(
            "SELECT key, value FROM meta WHERE key IN (?, ?)", (PROVIDER_KEY, TROUBLE_KEY)
        ).fetchall()
    )
    provider, trouble = values.get(PROVIDER_KEY), values.get(TROUBLE_KEY)
    return ProviderState(
        None if provider is None else str(provider), None if trouble is None else str(trouble)
    )


def provider_fields(db_path: str | Path) -> dict[str, str | None]:
    """``status --json``'s ``provider`` and ``provider_trouble`` fields (read-only)."""
    conn = open_readonly(db_path)
    try:
        state = read_provider_state(conn)
    finally:
        conn.close()
    return {"provider": state.provider, "provider_trouble": state.trouble}
