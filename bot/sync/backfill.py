"""Parallel ``eth_getLogs`` backfill (SPEC §6, §7).

Windows are fetched concurrently (a real cap: ``workers`` requests in flight), their raw logs go
through a bounded queue to one writer that stores them in batches, so fetching and writing
overlap. Memory stays flat however long the history:

- a range of fewer than ``workers`` windows is cut into ``workers`` windows, so every worker is
  busy (:func:`~bot.core.ranges.even_span`);
- windows are sized by the logs an answer should hold (``window_logs``, learned from the answers:
  :class:`~bot.core.ranges.LogDensity`); only one window (a probe,
  :class:`~bot.core.ranges.WindowPlan`) is in flight until the first answer of a run tells how
  dense the chain is;
- fetched logs wait for the writer only while fewer than ``max_logs_queued`` are waiting (a
  fetcher holds its answer until there is room), whatever the size of the windows.

The number of workers adapts to the provider (AIMD, :class:`~bot.core.concurrency.
ConcurrencyLimit`): a rate limit met by a worker's call halves it, successes grow it back by one
up to ``workers``. The endpoint retries rate limits itself; the transport reports each one to the
calling worker through :data:`~bot.chain.transport.rate_limit_observer`.

Windows complete in any order; the checkpoint moves only over the contiguous prefix of completed
windows, so a failed window is never skipped. Near the head (within ``near_head_blocks`` of it)
blocks are fetched one by one by ``blockHash``, which fails loudly where a load-balanced provider
might answer ``[]`` for a block its backend has not seen yet.

The chain may reorganise while this runs, so every checkpoint move is linked (SPEC §7):

- The checkpoint moves from H to H+1 only when H+1's parent hash is H's stored hash: for a
  by-hash block its header, for a ranged window its first header (read with the window, which
  also vouches for the logs: see :func:`bot.chain.blocks.read_window`). A block that does not
  link is a reorg: walk back to the fork point, roll back to it, and fetch again from there.
- The canonical hash of every block within ``RECENT_BLOCKS_KEPT`` of the end is recorded (every
  header of those windows is read), so a later fork-point walk stops at the real fork point.
- A queued row the answer does not contain is never removed for it: its block is re-read by
  hash; still missing while its block is canonical is :class:`MissingLogError` (a loud error,
  retried; the checkpoint does not pass it). Rows whose height has another canonical hash are
  removed when the checkpoint moves over them (hash evidence).
- A restart re-checks the recorded chain below the checkpoint, not only the checkpoint's hash.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from loguru import logger

from bot.chain.blocks import LogFilter, get_header, get_logs_by_hash, read_window
from bot.chain.endpoint import Endpoint, Lane
from bot.chain.transport import rate_limit_observer
from bot.core.concurrency import ConcurrencyLimit
from bot.core.heads import Head
from bot.core.ranges import BlockRange, LogDensity, SpanPolicy, WindowPlan, classify
from bot.core.retry import delay_s
from bot.errors import ChainReorged, FatalError, MissingLogError, RpcError, TransientError
from bot.metrics import Metrics
from bot.store.chain_state import RECENT_BLOCKS_KEPT
from bot.sync.forks import ChainState, resume_point, rewind, vouch
from bot.sync.progress import Progress
from bot.sync.window_writer import BackfillResult, BackfillSink, Fetched, LogBudget, write_windows

# re-exported for bot.sync.runner (the RPC helpers live in bot.chain.blocks now)
__all__ = ["Backfill", "BackfillResult", "BackfillSink", "LogFilter", "get_header"]

T = TypeVar("T")

RETRY_BASE_S = 0.2
RETRY_MAX_S = 30.0
WINDOW_LOGS = 5_000
"""Logs one ``eth_getLogs`` answer should hold: windows shrink to it on a dense chain."""
MAX_LOGS_QUEUED = 20_000
"""Fetched logs that may wait for the writer; a fetcher with more waits before handing over."""
GROW_AFTER = 4
"""Windows fetched in a row with no rate limit before one more worker is allowed."""


async def _pause(what: str, error: Exception, attempt: int) -> None:
    wait = delay_s(
        attempt,
        base_s=RETRY_BASE_S,
        max_s=RETRY_MAX_S,
        retry_after_s=error.retry_after_s if isinstance(error, TransientError) else None,
    )
    log = logger.error if isinstance(error, MissingLogError) else logger.warning
    log("{} failed ({}: {}); retrying in {:.2f} s", what, type(error).__name__, error, wait)
    await asyncio.sleep(wait)


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
        state: ChainState | None = None,
        window_logs: int = WINDOW_LOGS,
        max_logs_queued: int = MAX_LOGS_QUEUED,
        grow_after: int = GROW_AFTER,
    ) -> None:
        self._endpoint = endpoint
        self._sink = sink
        # the chain's record: the sink itself (a ChainStore) unless a wrapped sink is given
        if state is None:
            if not isinstance(sink, ChainState):
                raise TypeError("Backfill needs a ChainState: pass state= with a wrapped sink")
            state = sink
        self._state = state
        self._filter = log_filter
        self._workers = max(1, workers)
        # the window size and the cap a provider taught us outlive one run: pass the
        # provider's policy to share it between runs (SPEC §6: remember it per provider)
        self._policy = policy if policy is not None else SpanPolicy(batch_blocks)
        self._near_head = near_head_blocks
        self._metrics = metrics or Metrics()
        self._write_batch = write_batch_logs
        self._on_window = on_window
        self._density = LogDensity(window_logs)
        self._max_logs_queued = max_logs_queued
        # how many workers the provider lets us keep busy now (AIMD, up to `workers`)
        self.concurrency = ConcurrencyLimit(self._workers, grow_after=grow_after)
        self._metrics.backfill_concurrency_limit.set(self.concurrency.limit)
        self.reorgs = 0

    async def run(self, start: int, end: int, *, head: int | None = None) -> BackfillResult:
        """Store every orderbook log of blocks ``start..end`` (inclusive) and advance the
        checkpoint to ``end``. ``head`` (default ``end``) decides which blocks are near it.
        A reorg met on the way is followed: the run ends with the checkpoint on the chain."""
        began = time.monotonic()
        if end < start - 1:
            return BackfillResult(0, 0, 0, 0.0)
        # also with nothing new to fetch (end = start - 1): a restart re-checks what it holds
        resumed = await self._retrying(
            "re-checking the recorded chain",
            lambda: resume_point(self._endpoint, self._state, start, lane=Lane.BACKFILL),
        )
        if resumed < start:
            self.reorgs += 1
        start = resumed
        if end < start:
            return BackfillResult(0, 0, 0, 0.0)
        head = end if head is None else head
        progress = Progress(start, end)
        totals = BackfillResult(0, 0, 0, 0.0)
        unsettled = 0  # reorgs in a row that found our checkpoint still on the chain
        while True:
            try:
                await self._pass(start, end, head, progress, totals)
                break
            except ChainReorged as reorg:
                self.reorgs += 1
                logger.warning("reorg while backfilling: {}", reorg)
                met = reorg
            ancestor = await self._retrying(
                "finding the fork point",
                lambda at=met.from_number: rewind(
                    self._endpoint.pinned(), self._state, at, lane=Lane.BACKFILL
                ),
            )
            start = ancestor.number + 1
            # a block that did not link although nothing below it changed: the provider
            # answered from two branches in turn; give it time rather than spin
            unsettled = unsettled + 1 if ancestor.number >= met.from_number else 0
            if unsettled:
                await _pause("following the chain", met, unsettled)
        totals.seconds = time.monotonic() - began
        self._metrics.backfill_duration_seconds.observe(totals.seconds)
        progress.finish()
        return totals

    async def _retrying(self, what: str, step: Callable[..., Awaitable[T]], *args: object) -> T:
        """``step(*args)``, retried with capped backoff for as long as it fails transiently
        (a reorg is not a failure: it goes to the caller)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await step(*args)
            except ChainReorged:
                raise
            except TransientError as error:
                await _pause(what, error, attempt)

    async def _pass(
        self, start: int, end: int, head: int, progress: Progress, totals: BackfillResult
    ) -> None:
        # never past ``end``: a `bot backfill --to M` well below the head stops its checkpoint at M
        by_hash_from = max(start, min(end + 1, head - self._near_head))
        # every header within RECENT_BLOCKS_KEPT of the end is read (and recorded), so that a
        # fork-point walk finds each of them; deeper down only each window's first and last
        full_from = end - RECENT_BLOCKS_KEPT + 1
        if by_hash_from > start:
            await self._ranges(BlockRange(start, by_hash_from - 1), progress, totals, full_from)
        for number in range(by_hash_from, end + 1):
            await self._retrying(f"block {number} by hash", self._by_hash, number, progress, totals)

    async def _by_hash(self, number: int, progress: Progress, totals: BackfillResult) -> None:
        header = await get_header(self._endpoint, number, lane=Lane.BACKFILL)
        below = await self._state.known_hash(number - 1)
        if below is not None and header.parent_hash != below:
            raise ChainReorged(
                f"block {number} ({header.hash[:10]}) does not link to block {number - 1} "
                f"({below[:10]}) we hold",
                from_number=number - 1,
            )
        logs = await get_logs_by_hash(
            self._endpoint, self._filter, header.hash, number=number, lane=Lane.BACKFILL
        )
        logs, _extra = await vouch(
            self._endpoint,
            self._state,
            self._filter,
            BlockRange(number, number),
            canonical={number: header.hash},
            logs=logs,
        )
        # a live hint of this height from a losing fork must not stay pending
        totals.stored += await self._sink.reconcile(header, logs)
        totals.events += len(logs)
        totals.blocks += 1
        self._metrics.blocks_backfilled_total.inc()
        progress.window(BlockRange(number, number), len(logs))

    async def _fetch(self, window: BlockRange, full_from: int) -> Fetched:
        read = await read_window(
            self._endpoint,
            self._filter,
            window,
            every_header_from=full_from,
            min_head=window.end + self._near_head,
        )
        named = dict(read.named)
        for header in read.headers:
            named[header.number] = header.hash
        logs, extra = await vouch(
            self._endpoint, self._state, self._filter, window, canonical=named, logs=read.logs
        )
        listed = {header.number for header in (*read.headers, *extra)}
        hashes_only = [Head(n, h, "") for n, h in read.named.items() if n not in listed]
        return Fetched(window, logs, read.first, read.last, [*read.headers, *extra, *hashes_only])

    def _rate_limited(self, sent_in: int, progress: Progress) -> None:
        """A worker's call (sent in epoch ``sent_in``) was rate-limited: maybe halve."""
        if self.concurrency.on_rate_limit(sent_in):
            logger.warning(
                "the provider limits our rate: {} of {} backfill workers now",
                self.concurrency.limit,
                self.concurrency.maximum,
            )
            self._concurrency_changed(progress)

    def _concurrency_changed(self, progress: Progress) -> None:
        self._metrics.backfill_concurrency_limit.set(self.concurrency.limit)
        progress.workers = (self.concurrency.limit, self.concurrency.maximum)

    async def _ranges(
        self, whole: BlockRange, progress: Progress, totals: BackfillResult, full_from: int
    ) -> None:
        # bounded twice: in windows (a queue of empty windows stays short) and in logs (memory)
        results: asyncio.Queue[Fetched | None] = asyncio.Queue(maxsize=self._workers * 2)
        budget = LogBudget(self._max_logs_queued)
        writer = asyncio.create_task(
            write_windows(
                whole,
                results,
                sink=self._sink,
                state=self._state,
                metrics=self._metrics,
                progress=progress,
                totals=totals,
                budget=budget,
                write_batch=self._write_batch,
                on_window=self._on_window,
            )
        )
        plan = WindowPlan(whole, self._policy, self._density, parts=self._workers)
        in_flight: set[asyncio.Task[None]] = set()
        failure: BaseException | None = None
        # a chain of unknown density: one window first (its answer tells how many blocks hold
        # `window_logs`), so that the first wave is not `workers` answers of any size
        answered = not plan.probe
        wake = asyncio.Event()  # a worker changed what may be dispatched
        self._concurrency_changed(progress)

        def allowed() -> int:
            return self.concurrency.limit if answered else 1

        def on_answer() -> None:
            nonlocal answered
            if not answered:
                answered = True
                wake.set()

        async def fetch(window: BlockRange) -> None:
            current: BlockRange | None = window
            attempt = 0
            sent_in = self.concurrency.epoch
            # the calls of this task (its own context) report their rate limits here
            rate_limit_observer.set(lambda: self._rate_limited(sent_in, progress))
            while current is not None:
                sent_in = self.concurrency.epoch
                try:
                    fetched = await self._fetch(current, full_from)
                except RpcError as error:
                    on_answer()
                    classified = classify(
                        str(error), code=error.code, http_status=error.http_status
                    )
                    decision = self._policy.on_failure(current, classified)
                    if decision.remainder is not None:
                        plan.requeue(decision.remainder)
                    logger.info(
                        "eth_getLogs {} answered '{}': {} now, {} later",
                        current,
                        str(error)[:120],
                        decision.retry,
                        decision.remainder,
                    )
                    current = decision.retry
                    if decision.back_off:
                        attempt += 1
                        await _pause(f"blocks {current}", error, attempt)
                    continue
                except TransientError as error:
                    on_answer()
                    attempt += 1
                    await _pause(f"blocks {current}", error, attempt)
                    continue
                self._policy.on_success()
                self._density.observe(current.span, len(fetched.logs))
                on_answer()
                if self.concurrency.on_success():
                    logger.info(
                        "{} of {} backfill workers now",
                        self.concurrency.limit,
                        self.concurrency.maximum,
                    )
                    self._concurrency_changed(progress)
                    wake.set()
                await budget.take(len(fetched.logs))
                await results.put(fetched)
                current = None

        try:
            while True:
                while len(in_flight) < allowed() and failure is None:
                    window = plan.next()
                    if window is None:
                        break
                    task = asyncio.create_task(fetch(window))
                    in_flight.add(task)
                self._metrics.backfill_workers.set(len(in_flight))
                if not in_flight:
                    break
                wake.clear()
                woken = asyncio.ensure_future(wake.wait())
                try:
                    done, _ = await asyncio.wait(
                        {*in_flight, writer, woken}, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    woken.cancel()  # also when we are cancelled: no task left pending
                if writer in done:
                    # the writer only ends early by failing (a reorg, or the database)
                    raise writer.exception() or FatalError("the backfill writer stopped early")
                for finished in done & in_flight:
                    in_flight.discard(finished)
                    if finished.exception() is not None and failure is None:
                        failure = finished.exception()
                if failure is not None and not in_flight:
                    raise failure
            # the queue may be full of windows a writer that failed will never take
            finish = asyncio.ensure_future(results.put(None))
            await asyncio.wait({finish, writer}, return_when=asyncio.FIRST_COMPLETED)
            if not finish.done():
                finish.cancel()
            await writer
        finally:
            for task in in_flight:
                task.cancel()
            if not writer.done():
                writer.cancel()
            await asyncio.gather(*in_flight, writer, return_exceptions=True)
            self._metrics.backfill_workers.set(0)
