"""Parallel ``eth_getLogs`` backfill (SPEC §6).

Windows are fetched concurrently (a real cap: ``workers`` requests in flight), their raw logs go
through a bounded queue to one writer that stores them in batches, so fetching and writing
overlap and memory stays flat however long the history. Windows complete in any order; the
checkpoint moves only over the contiguous prefix of completed windows, so a failed window is
never skipped. Near the head (within ``near_head_blocks`` of it) blocks are fetched one by one by
``blockHash``, which fails loudly where a load-balanced provider might answer ``[]`` for a block
its backend has not seen yet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from loguru import logger

from bot.chain.endpoint import Endpoint, Lane, is_transient
from bot.chain.parse import parse_head, parse_log
from bot.chain.ws import RpcError
from bot.core.heads import Head
from bot.core.model import RawLog
from bot.core.ranges import Action, BlockRange, SpanPolicy, classify
from bot.errors import FatalError, TransientError
from bot.metrics import Metrics
from bot.sync.progress import Progress


class BackfillSink(Protocol):
    async def store(self, logs: list[RawLog]) -> int:
        """Write raw logs idempotently in one transaction; the number newly stored."""
        ...

    async def advance(self, head: Head) -> None:
        """Move the checkpoint to ``head`` (every log up to it is stored)."""
        ...

    async def reconcile(self, head: Head, logs: list[RawLog]) -> int:
        """Store the logs of block ``head`` fetched by its hash, remove queued rows of that
        height with another hash, and move the checkpoint to it, atomically."""
        ...


@dataclass(frozen=True, slots=True)
class LogFilter:
    address: str
    topics: tuple[str, ...]

    def params(self, **extra: Any) -> list[Any]:
        return [{"address": self.address, "topics": [list(self.topics)], **extra}]


def _range_error_retry(error: BaseException) -> bool:
    """Retry what the planner would retry anyway; let range answers reach the planner."""
    if isinstance(error, RpcError):
        action = classify(str(error), code=error.code, http_status=error.http_status).action
        return action in (Action.WAIT, Action.RATE_LIMIT, Action.RETRY)
    return is_transient(error)


async def get_header(endpoint: Endpoint, number: int, *, lane: Lane = Lane.LIVE) -> Head:
    answer = await endpoint.call("eth_getBlockByNumber", [hex(number), False], lane=lane)
    if answer is None:
        raise TransientError(f"block {number} is not available yet")
    return parse_head(answer)


async def get_logs_by_hash(
    endpoint: Endpoint, log_filter: LogFilter, block_hash: str, *, lane: Lane = Lane.LIVE
) -> list[RawLog]:
    answer = await endpoint.call("eth_getLogs", log_filter.params(blockHash=block_hash), lane=lane)
    return [parse_log(item) for item in answer]


@dataclass(slots=True)
class BackfillResult:
    blocks: int
    events: int
    stored: int
    seconds: float


class Backfill:
    def __init__(
        self,
        endpoint: Endpoint,
        sink: BackfillSink,
        log_filter: LogFilter,
        *,
        workers: int,
        batch_blocks: int,
        near_head_blocks: int = 2,
        metrics: Metrics | None = None,
        write_batch_logs: int = 5000,
        on_window: Callable[[BlockRange], Awaitable[None]] | None = None,
        policy: SpanPolicy | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._sink = sink
        self._filter = log_filter
        self._workers = max(1, workers)
        # the window size and the cap a provider taught us outlive one run: pass the
        # provider's policy to share it between runs (SPEC §6: remember it per provider)
        self._policy = policy if policy is not None else SpanPolicy(batch_blocks)
        self._near_head = near_head_blocks
        self._metrics = metrics or Metrics()
        self._write_batch = write_batch_logs
        self._on_window = on_window

    async def run(self, start: int, end: int, *, head: int | None = None) -> BackfillResult:
        """Store every orderbook log of blocks ``start..end`` (inclusive) and advance the
        checkpoint to ``end``. ``head`` (default ``end``) decides which blocks are near it."""
        began = time.monotonic()
        if end < start:
            return BackfillResult(0, 0, 0, 0.0)
        head = end if head is None else head
        by_hash_from = max(start, head - self._near_head)
        far = BlockRange(start, by_hash_from - 1) if by_hash_from > start else None
        progress = Progress(start, end)
        totals = BackfillResult(0, 0, 0, 0.0)
        if far is not None:
            await self._ranges(far, progress, totals)
        for number in range(by_hash_from, end + 1):
            header = await get_header(self._endpoint, number, lane=Lane.BACKFILL)
            logs = await get_logs_by_hash(
                self._endpoint, self._filter, header.hash, lane=Lane.BACKFILL
            )
            # a live hint of this height from a losing fork must not stay pending
            totals.stored += await self._sink.reconcile(header, logs)
            totals.events += len(logs)
            totals.blocks += 1
            self._metrics.blocks_backfilled_total.inc()
            progress.window(BlockRange(number, number), len(logs))
        totals.seconds = time.monotonic() - began
        self._metrics.backfill_duration_seconds.observe(totals.seconds)
        progress.finish()
        return totals

    async def _ranges(self, whole: BlockRange, progress: Progress, totals: BackfillResult) -> None:
        results: asyncio.Queue[tuple[BlockRange, list[RawLog]] | None] = asyncio.Queue(
            maxsize=self._workers * 2
        )
        writer = asyncio.create_task(self._write(whole, results, progress, totals))
        pending: list[BlockRange] = []  # remainders of split windows: dispatched first
        next_start = whole.start
        in_flight: set[asyncio.Task[None]] = set()
        failure: BaseException | None = None

        def next_window() -> BlockRange | None:
            nonlocal next_start
            if pending:
                # a remainder queued before a cap was learned may exceed it: trim it now
                window = pending.pop(0)
                first = window.head(self._policy.limit())
                rest = window.after(first)
                if rest is not None:
                    pending.insert(0, rest)
                return first
            if next_start > whole.end:
                return None
            window = self._policy.window(next_start, whole.end)
            next_start = window.end + 1
            return window

        async def fetch(window: BlockRange) -> None:
            current: BlockRange | None = window
            while current is not None:
                try:
                    logs = await self._fetch(current)
                except RpcError as error:
                    classified = classify(
                        str(error), code=error.code, http_status=error.http_status
                    )
                    decision = self._policy.on_failure(current, classified)
                    if decision.remainder is not None:
                        pending.append(decision.remainder)
                        pending.sort(key=lambda r: r.start)
                    logger.info(
                        "eth_getLogs {} answered '{}': {} now, {} later",
                        current,
                        str(error)[:120],
                        decision.retry,
                        decision.remainder,
                    )
                    current = decision.retry
                    continue
                self._policy.on_success()
                await results.put((current, logs))
                current = None

        try:
            while True:
                while len(in_flight) < self._workers and failure is None:
                    window = next_window()
                    if window is None:
                        break
                    task = asyncio.create_task(fetch(window))
                    in_flight.add(task)
                self._metrics.backfill_workers.set(len(in_flight))
                if not in_flight:
                    break
                done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    in_flight.discard(task)
                    if task.exception() is not None and failure is None:
                        failure = task.exception()
                if failure is not None and not in_flight:
                    raise failure
            await results.put(None)
            await writer
        finally:
            for task in in_flight:
                task.cancel()
            if not writer.done():
                writer.cancel()
            await asyncio.gather(*in_flight, writer, return_exceptions=True)
            self._metrics.backfill_workers.set(0)

    async def _fetch(self, window: BlockRange) -> list[RawLog]:
        answer = await self._endpoint.call(
            "eth_getLogs",
            self._filter.params(fromBlock=hex(window.start), toBlock=hex(window.end)),
            lane=Lane.BACKFILL,
            retry_if=_range_error_retry,
            max_tries=1_000_000,  # a window is never given up: the breaker paces the retries
        )
        if not isinstance(answer, list):
            raise TransientError(f"eth_getLogs {window} answered {str(answer)[:80]}")
        return [parse_log(item) for item in answer]

    async def _write(
        self,
        whole: BlockRange,
        results: asyncio.Queue[tuple[BlockRange, list[RawLog]] | None],
        progress: Progress,
        totals: BackfillResult,
    ) -> None:
        done: dict[int, BlockRange] = {}  # completed windows by start, beyond the prefix
        prefix_end = whole.start - 1
        finished = False
        while not finished:
            batch: list[RawLog] = []
            windows: list[tuple[BlockRange, int]] = []
            item = await results.get()
            while True:
                if item is None:
                    finished = True
                    break
                window, logs = item
                windows.append((window, len(logs)))
                batch.extend(logs)
                if len(batch) >= self._write_batch or results.empty():
                    break
                item = await results.get()
            if not windows:
                continue
            totals.stored += await self._sink.store(batch)
            totals.events += len(batch)
            for window, count in windows:
                done[window.start] = window
                self._metrics.blocks_backfilled_total.inc(window.span)
                totals.blocks += window.span
                progress.window(window, count)
                if self._on_window is not None:
                    await self._on_window(window)
            advanced = prefix_end
            while advanced + 1 in done:
                advanced = done.pop(advanced + 1).end
            if advanced > prefix_end:
                prefix_end = advanced
                header = await get_header(self._endpoint, prefix_end, lane=Lane.BACKFILL)
                await self._sink.advance(header)
        if prefix_end != whole.end:
            raise FatalError(f"backfill ended at block {prefix_end}, short of {whole.end}")
