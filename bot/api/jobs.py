"""Backfill jobs started over the HTTP API (SPEC §10, seed 002).

Rules:
- A job re-scans ``[from, to]`` with ``eth_getLogs`` on the backfill lane (beside live following,
  which keeps the live lane) in windows of ``backfill.batch_blocks``, shrinking a window when
  the provider says it is too large, and writes what it finds with :func:`bot.store.queue.enqueue`:
  idempotent, only what is missing is added (``events_added``; ``events_found`` counts every log
  seen). The normal drain books the added events in order; one below the processed frontier is
  the drain's "late" case, nothing for the job to do.
- A job never moves the checkpoint (in either direction) and never removes or revives a row: a log
  seen in another block is only recorded as a reorg sighting by ``enqueue`` (SPEC §7 decides).
- Every job is a row of ``backfill_jobs`` updated after each window, so its status survives the
  process. A row left ``running`` by a process that died (or that stopped while it ran) is marked
  ``interrupted``; a cancelled one is ``cancelled``; an error ends it ``failed`` with the error's
  text (provider URLs redacted).
- The service writes from a connection of its own (never the drain's transactions).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
from loguru import logger

from bot.chain.endpoint import Endpoint, Lane, is_transient
from bot.chain.parse import parse_log, quantity
from bot.chain.ws import RpcError
from bot.config import redact_url
from bot.core.ranges import Action, BlockRange, SpanPolicy, classify
from bot.store.connection import connect
from bot.store.migrations import apply_migrations
from bot.store.queue import enqueue, now_text
from bot.store.txn import write_transaction

MAX_RUNNING = 4
"""Jobs running at once; more would only compete with each other for the backfill lane."""

_COLUMNS = (
    "job_id, state, from_block, to_block, blocks_done, events_found, events_added, started_at,"
    " finished_at, error"
)
_SPLITS = (Action.USE_RANGE, Action.CAP, Action.SHRINK)


@dataclass(frozen=True, slots=True)
class LogSource:
    """Where and what a job fetches: the provider and the orderbook's log filter."""

    endpoint: Endpoint
    address: str
    topics: tuple[str, ...]
    batch_blocks: int


def job_status(row: Sequence[Any]) -> dict[str, Any]:
    """A ``backfill_jobs`` row as the SPEC §10 status object."""
    job_id, state, first, last, done, found, added, started, finished, error = row
    return {
        "job_id": int(job_id),
        "state": str(state),
        "from": int(first),
        "to": int(last),
        "blocks_done": int(done),
        "blocks_total": int(last) - int(first) + 1,
        "events_found": int(found),
        "events_added": int(added),
        "started_at": started,
        "finished_at": finished,
        "error": error,
    }


def _retry(error: BaseException) -> bool:
    """Retry passing faults; let "range too large" answers through to the window policy."""
    if isinstance(error, RpcError):
        action = classify(str(error), code=error.code, http_status=error.http_status).action
        if action in _SPLITS:
            return False
    return is_transient(error)


class BackfillJobs:
    """Starts, tracks, cancels and lists backfill jobs; build it with :meth:`open`."""

    def __init__(self, conn: aiosqlite.Connection, source: LogSource) -> None:
        self._conn = conn
        self._source = source
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._closing = False

    @classmethod
    async def open(cls, database: str | Path, source: LogSource) -> BackfillJobs:
        """Connect (migrating if needed) and mark jobs a dead process left running."""
        conn = await connect(database)
        try:
            await apply_migrations(conn)
            async with write_transaction(conn):
                cursor = await conn.execute(
                    "UPDATE backfill_jobs SET state = 'interrupted', finished_at = ?,"
                    " error = 'the process stopped while the job ran' WHERE state = 'running'",
                    (now_text(),),
                )
        except BaseException:
            await conn.close()
            raise
        if cursor.rowcount:
            logger.warning("{} backfill job(s) were interrupted by a restart", cursor.rowcount)
        return cls(conn, source)

    async def head(self) -> int:
        """The chain's current block number (the highest block a job may scan)."""
        answer = await self._source.endpoint.call("eth_blockNumber", [], lane=Lane.BACKFILL)
        return quantity(answer, "eth_blockNumber")

    def running(self) -> int:
        return sum(1 for task in self._tasks.values() if not task.done())

    async def start(self, first: int, last: int) -> dict[str, Any]:
        """Record a new job over ``first..last`` (validated by the caller) and start it."""
        if not 0 <= first <= last:
            raise ValueError(f"bad job range {first}..{last}")
        async with write_transaction(self._conn):
            cursor = await self._conn.execute(
                "INSERT INTO backfill_jobs (state, from_block, to_block, started_at)"
                " VALUES ('running', ?, ?, ?)",
                (first, last, now_text()),
            )
        job_id = cursor.lastrowid
        assert job_id is not None
        self._tasks = {key: task for key, task in self._tasks.items() if not task.done()}
        logger.info("backfill job {} started: blocks {}-{}", job_id, first, last)
        self._tasks[job_id] = asyncio.create_task(
            self._run(job_id, BlockRange(first, last)), name=f"backfill-job-{job_id}"
        )
        status = await self.get(job_id)
        assert status is not None
        return status

    async def get(self, job_id: int) -> dict[str, Any] | None:
        rows = list(
            await self._conn.execute_fetchall(
                f"SELECT {_COLUMNS} FROM backfill_jobs WHERE job_id = ?", (job_id,)
            )
        )
        return job_status(rows[0]) if rows else None

    async def all(self) -> list[dict[str, Any]]:
        """Every job, oldest first."""
        rows = await self._conn.execute_fetchall(
            f"SELECT {_COLUMNS} FROM backfill_jobs ORDER BY job_id"
        )
        return [job_status(row) for row in rows]

    async def cancel(self, job_id: int) -> dict[str, Any] | None:
        """Stop a running job (``cancelled``); a finished one stays as it is. None: no such job."""
        task = self._tasks.get(job_id)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return await self.get(job_id)

    async def wait(self, job_id: int) -> dict[str, Any] | None:
        """Wait until the job ends (for tests and for callers that need its outcome)."""
        task = self._tasks.get(job_id)
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)
        return await self.get(job_id)

    async def close(self) -> None:
        """Stop every running job (each is marked ``interrupted``) and close the connection."""
        self._closing = True
        tasks = [task for task in self._tasks.values() if not task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._conn.close()

    async def _run(self, job_id: int, whole: BlockRange) -> None:
        try:
            await self._scan(job_id, whole)
        except asyncio.CancelledError:
            state = "interrupted" if self._closing else "cancelled"
            reason = "the process stopped" if self._closing else "cancelled over the API"
            await self._finish(job_id, state, reason)
            logger.info("backfill job {} {}", job_id, state)
            raise
        except Exception as exc:  # any failure ends this job only, never the bot
            error = self._scrub(f"{type(exc).__name__}: {exc}")
            await self._finish(job_id, "failed", error)
            logger.warning("backfill job {} failed: {}", job_id, error)
            return
        await self._finish(job_id, "done", None)
        logger.info("backfill job {} done", job_id)

    async def _scan(self, job_id: int, whole: BlockRange) -> None:
        policy = SpanPolicy(self._source.batch_blocks)
        remaining: BlockRange | None = whole
        while remaining is not None:
            window = policy.window(remaining.start, remaining.end)
            try:
                logs = await self._fetch(window)
            except RpcError as error:
                classified = classify(str(error), code=error.code, http_status=error.http_status)
                if classified.action not in _SPLITS:
                    raise
                decision = policy.on_failure(window, classified)  # raises for one block
                logger.info("backfill job {}: {} too large, trying {}", job_id, window, decision)
                continue
            policy.on_success()
            result = await enqueue(self._conn, logs)
            async with write_transaction(self._conn):
                await self._conn.execute(
                    "UPDATE backfill_jobs SET blocks_done = blocks_done + ?,"
                    " events_found = events_found + ?, events_added = events_added + ?"
                    " WHERE job_id = ?",
                    (window.span, len(logs), result.inserted, job_id),
                )
            remaining = remaining.after(window)

    async def _fetch(self, window: BlockRange) -> list[Any]:
        source = self._source
        params = {
            "address": source.address,
            "topics": [list(source.topics)],
            "fromBlock": hex(window.start),
            "toBlock": hex(window.end),
        }
        answer = await source.endpoint.call(
            "eth_getLogs", [params], lane=Lane.BACKFILL, retry_if=_retry
        )
        if not isinstance(answer, list):
            raise RpcError(f"eth_getLogs {window} answered {str(answer)[:80]}", code=None)
        return [parse_log(item) for item in answer]

    async def _finish(self, job_id: int, state: str, error: str | None) -> None:
        # shielded: a second cancellation must not leave the row 'running'
        await asyncio.shield(self._write_end(job_id, state, error))

    async def _write_end(self, job_id: int, state: str, error: str | None) -> None:
        async with write_transaction(self._conn):
            await self._conn.execute(
                "UPDATE backfill_jobs SET state = ?, finished_at = ?, error = ? WHERE job_id = ?",
                (state, now_text(), error, job_id),
            )

    def _scrub(self, text: str) -> str:
        """Error texts may quote the provider URL, which often embeds an API key."""
        url = self._source.endpoint.url
        return (text.replace(url, redact_url(url)) if url else text)[:500]
