"""Crash-test kit: the seed database, the worker process, read-only probes and table dumps.

The worker is ``drain_worker.py`` beside this file, run with ``sys.executable`` as a separate
process. Its stdout is a line protocol (``locked``, ``started``, ``placing <coid>``, ``done``)
read by a thread into a queue, so the test waits on it with a deadline and never on a sleep.
"""

from __future__ import annotations

import asyncio
import filecmp
import os
import queue as thread_queue
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bot.core.model import RawLog
from bot.devnet.synthetic import (
    ORDERBOOK,
    OWNER,
    SYNTHETIC_TOKENS,
    ExpectedFill,
    synthetic_transactions,
)
from bot.store import ledger, queue
from bot.store.connection import ServedChain, open_database

SERVED = ServedChain(31337, ORDERBOOK, OWNER, 0)
WORKER = Path(__file__).with_name("drain_worker.py")
POLL_S = 0.001  # poll interval inside wait-with-deadline loops


# --- the seed database -----------------------------------------------------------------------


@dataclass(frozen=True)
class Seed:
    """The seed database file and the answer key of its stream (fills in queue order)."""

    path: Path
    n_logs: int
    expected: tuple[ExpectedFill, ...]
    stored_processed: int  # logs of other owners, stored processed (bot.store.queue)


async def _fill_database(path: Path, logs: list[RawLog]) -> None:
    conn, _meta = await open_database(path, SERVED)  # migrations + meta (with its instance id)
    try:
        for info in SYNTHETIC_TOKENS.values():  # pre-seeded: the drain never needs a chain
            await ledger.save_token(conn, info)
        result = await queue.enqueue(conn, logs)
        assert result.inserted == len(logs), result
    finally:
        await conn.close()


def build_seed(path: Path, n_logs: int, *, seed: int) -> Seed:
    """A database file of ``n_logs`` pending synthetic events, its WAL folded into the file."""
    # half of the transactions ours: the logs of other owners are stored processed, so the
    # drain's work (and the kills' room) is the pending half
    txs = list(synthetic_transactions(n_logs, seed=seed, ours_ratio=0.5))
    asyncio.run(_fill_database(path, [log for tx in txs for log in tx.logs]))
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        busy, log_frames, checkpointed = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0 and log_frames == checkpointed, (busy, log_frames, checkpointed)
        (stored_processed,) = conn.execute(
            "SELECT COUNT(*) FROM events WHERE status = 'processed'"
        ).fetchone()
    finally:
        conn.close()
    wal = Path(f"{path}-wal")
    assert not wal.exists() or wal.stat().st_size == 0, "a copy would not be self-contained"
    return Seed(
        path, n_logs, tuple(fill for tx in txs for fill in tx.expected), int(stored_processed)
    )


def copy_seed(seed: Seed, target: Path) -> Path:
    """A byte-for-byte copy of the seed database file (no connection is open on it)."""
    shutil.copyfile(seed.path, target)
    assert filecmp.cmp(seed.path, target, shallow=False)
    return target


# --- read-only probes --------------------------------------------------------------------------


def reader(db: Path) -> sqlite3.Connection:
    """A connection that only reads (``query_only``), safe beside a running writer.

    Not ``mode=ro``: after a SIGKILL the WAL index may need recovery, which only a connection
    with write access may run (a read-only one fails with SQLITE_READONLY_RECOVERY).
    """
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA query_only = ON")
    return conn


def read_rows(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = reader(db)
    try:
        return list(conn.execute(sql, params))
    finally:
        conn.close()


class Probe:
    """One reading connection kept open for fast polling while a worker writes."""

    def __init__(self, db: Path) -> None:
        self._conn = reader(db)

    def processed(self) -> int:
        row = self._conn.execute("SELECT COUNT(*) FROM events WHERE status = 'processed'")
        return int(row.fetchone()[0])

    def executions(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM executions").fetchone()[0])

    def in_flight(self) -> list[tuple[str, str, str]]:
        """``(ticker, client_order_id, status)`` of PENDING / SUBMITTED executions, by id."""
        sql = (
            "SELECT ticker, client_order_id, status FROM executions"
            " WHERE status IN ('PENDING', 'SUBMITTED') ORDER BY id"
        )
        return [(str(t), str(c), str(s)) for t, c, s in self._conn.execute(sql)]

    def close(self) -> None:
        self._conn.close()


def wait_until(condition: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(POLL_S)  # poll interval of a wait with a deadline, not a synchronisation


# --- the worker process ------------------------------------------------------------------------


@dataclass
class Worker:
    """A running ``drain_worker.py``; its stdout lines arrive in ``lines``."""

    process: subprocess.Popen[str]
    lines: thread_queue.Queue[str | None]
    log_path: Path
    pump: threading.Thread

    @classmethod
    def start(cls, db: Path, log_path: Path, *flags: str) -> Worker:
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, str(WORKER), str(db), *flags],
                stdin=subprocess.PIPE,  # never written: EOF (our death) unblocks a paused worker
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        lines: thread_queue.Queue[str | None] = thread_queue.Queue()
        assert process.stdout is not None
        pump = threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True)
        pump.start()
        return cls(process, lines, log_path, pump)

    def next_line(self, timeout_s: float) -> str:
        """The next stdout line; fails on a timeout or when the worker exits first."""
        try:
            line = self.lines.get(timeout=timeout_s)
        except thread_queue.Empty:
            raise AssertionError(
                f"worker said nothing for {timeout_s} s; log:\n{self.log_tail()}"
            ) from None
        if line is None:
            code = self.process.wait(timeout=10)
            raise AssertionError(f"worker exited ({code}) early; log:\n{self.log_tail()}")
        return line

    def expect(self, prefix: str, timeout_s: float) -> str:
        line = self.next_line(timeout_s)
        assert line.startswith(prefix), f"expected {prefix!r}, got {line!r}"
        return line

    def sigkill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        code = self.process.wait(timeout=10)
        assert code == -signal.SIGKILL, code

    def finish(self, timeout_s: float) -> int:
        return self.process.wait(timeout=timeout_s)

    def stop(self) -> None:
        """Teardown: kill if still running, close the pipes."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.pump.join(timeout=10)  # EOF follows the death; then nobody reads the pipe
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def _pump(stream: IO[str], lines: thread_queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


# --- comparing databases -----------------------------------------------------------------------


def _tables(conn: sqlite3.Connection) -> list[str]:
    sql = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
    return [str(name) for (name,) in conn.execute(sql)]


def _columns(conn: sqlite3.Connection, table: str) -> tuple[list[str], list[str]]:
    """(columns that are not timestamps, primary-key columns in key order)."""
    info = list(conn.execute(f"PRAGMA table_info({table})"))
    kept = [str(c[1]) for c in info if not str(c[1]).endswith("_at")]
    key = [str(c[1]) for c in sorted(info, key=lambda c: int(c[5])) if int(c[5]) > 0]
    return kept, key


def dump_all(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, by primary key, without the ``*_at`` timestamp columns."""
    conn = reader(db)
    try:
        dumped: dict[str, list[tuple[Any, ...]]] = {}
        for table in _tables(conn):
            kept, key = _columns(conn, table)
            order = ", ".join(key) if key else ", ".join(kept)
            dumped[table] = list(
                conn.execute(f"SELECT {', '.join(kept)} FROM {table} ORDER BY {order}")
            )
        return dumped
    finally:
        conn.close()
