"""(c) Durable inserts of raw logs and reading them back, on a real SQLite file (WAL).

``bot.store.queue.enqueue`` of N synthetic raw logs in batches of 5,000 (the backfill writer's
batch) into a fresh migrated database at ``synchronous=FULL`` (what ``connect`` sets) and at
``NORMAL``, next to the floor: plain ``sqlite3`` ``executemany`` of the same rows into the same
table in one transaction. Then ``pending_events`` of them all (rows → ``QueuedEvent``) next to a
plain ``sqlite3`` ``SELECT`` of the same columns. Rows/s, medians of the runs.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from bench.context import Context
from bench.report import Row, Section, log, median, ratio
from bench.stub_node import History
from bot.core.model import RawLog
from bot.devnet.synthetic import ORDERBOOK, OWNER
from bot.store import queue
from bot.store.connection import ServedChain, open_database

NAME = "inserts"
TITLE = "Durable inserts of raw logs and reading them back"
BATCH = 5000


def raw_logs(n: int) -> list[RawLog]:
    """``n`` distinct raw logs as the backfill stores them (parsed from the stub's JSON)."""
    import json

    from bot.chain.parse import parse_log

    history = History(n, logs_per_block=20)
    return [parse_log(json.loads(t)) for t in history.logs(1, history.head)][:n]


async def _enqueue(db: Path, logs: list[RawLog], synchronous: str) -> tuple[float, float]:
    conn, _meta = await open_database(db, ServedChain(31337, ORDERBOOK, OWNER, 0))
    try:
        await conn.execute(f"PRAGMA synchronous = {synchronous}")
        began = time.perf_counter()
        for start in range(0, len(logs), BATCH):
            await queue.enqueue(conn, logs[start : start + BATCH])
        insert_s = time.perf_counter() - began
        # the logs of other owners were stored processed; read back every row (the drain's
        # query, as on a database whose rows all wait for it)
        await conn.execute("UPDATE events SET status = 'pending'")
        began = time.perf_counter()
        events = await queue.pending_events(conn, up_to_block=10**12, limit=len(logs) + 1)
        read_s = time.perf_counter() - began
        assert len(events) == len(logs)
        return insert_s, read_s
    finally:
        await conn.close()


def _plain(db: Path, logs: list[RawLog]) -> tuple[float, float]:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA synchronous = FULL")
    rows = [
        (lg.tx_hash, lg.log_index, lg.block_number, lg.block_hash, lg.tx_index, lg.address,
         lg.topic0, lg.data, "t", "t")
        for lg in logs
    ]  # fmt: skip
    began = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO events (tx_hash, log_index, block_number, block_hash, tx_index, address,"
        " topic0, data, enqueued_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (tx_hash, log_index) DO NOTHING",
        rows,
    )
    conn.execute("COMMIT")
    insert_s = time.perf_counter() - began
    began = time.perf_counter()
    got = conn.execute(
        "SELECT id, tx_hash, log_index, block_number, block_hash, tx_index, address, topic0, data,"
        " status, inclusion, attempts, reason FROM events WHERE status = 'pending'"
        " ORDER BY block_number, log_index"
    ).fetchall()
    read_s = time.perf_counter() - began
    conn.close()
    assert len(got) == len(logs)
    return insert_s, read_s


def run(ctx: Context) -> Section:
    n = ctx.size(40_000, 2_000)
    logs = raw_logs(n)
    size = sum(len(lg.data) for lg in logs) // n
    figures: dict[str, list[tuple[float, float]]] = {"FULL": [], "NORMAL": [], "plain": []}
    for number in range(ctx.runs):
        for mode in ("FULL", "NORMAL", "plain"):
            db = ctx.work / f"{mode}-{number}.db"
            if mode == "plain":
                asyncio.run(_enqueue(db, [], "FULL"))  # migrate the schema only
                figures[mode].append(_plain(db, logs))
            else:
                figures[mode].append(asyncio.run(_enqueue(db, logs, mode)))
        log(f"run {number + 1}: { {k: v[-1] for k, v in figures.items()} }")
    rate = {k: n / median(s for s, _ in v) for k, v in figures.items()}
    read = {k: n / median(r for _, r in v) for k, v in figures.items()}
    rows = [
        Row(
            f"`queue.enqueue` {n:,} raw logs, synchronous=FULL",
            f"{rate['FULL']:,.0f} rows/s",
            f"plain sqlite3 {rate['plain']:,.0f} rows/s",
            ratio(rate["plain"], rate["FULL"]),
            "NOTES: ~60k rows/s",
        ),
        Row(
            "… synchronous=NORMAL",
            f"{rate['NORMAL']:,.0f} rows/s",
            f"FULL {rate['FULL']:,.0f} rows/s",
            ratio(rate["FULL"], rate["NORMAL"]),
            "",
        ),
        Row(
            "`queue.pending_events` of them all (→ QueuedEvent)",
            f"{read['FULL']:,.0f} rows/s",
            f"plain sqlite3 SELECT {read['plain']:,.0f} rows/s",
            ratio(read["plain"], read["FULL"]),
            "",
        ),
    ]
    body = f"""{n:,} distinct raw logs (~{size:,} data bytes each, stored as BLOB), batches of
{BATCH:,} per transaction (one transaction for the plain floor), fresh migrated database each
time; medians of {ctx.runs} runs. The bot's enqueue also reads each log's order owners
(`events.owners`, ~2 µs a log) and stores the logs of other owners processed; the plain floor
writes neither.
Ratio = the bot's time / the reference's time for the same rows (lower is better).
"""
    return Section(NAME, TITLE, rows, body)
