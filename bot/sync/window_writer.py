"""The backfill's writer (SPEC §6, §7): fetched windows stored in batches, the checkpoint moved
over their contiguous prefix only, and the log budget that bounds what waits for it (memory).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Protocol

from bot.core.heads import Head
from bot.core.model import RawLog
from bot.core.ranges import BlockRange
from bot.errors import ChainReorged, FatalError
from bot.metrics import Metrics
from bot.sync.forks import ChainState
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


class LogBudget:
    """At most ``limit`` logs handed to the writer and not yet stored; one answer larger than
    the whole budget still passes when nothing else is held (a window is never refused)."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.held = 0
        self._freed = asyncio.Event()

    async def take(self, logs: int) -> None:
        while self.held and self.held + logs > self.limit:
            self._freed.clear()
            await self._freed.wait()
        self.held += logs

    def give(self, logs: int) -> None:
        self.held -= logs
        self._freed.set()


@dataclass(frozen=True, slots=True)
class Fetched:
    """One window's logs and the headers that vouch for them, as fetched."""

    window: BlockRange
    logs: list[RawLog]
    first: Head
    last: Head
    evidence: list[Head]  # canonical blocks to record before the checkpoint moves over them


@dataclass(slots=True)
class BackfillResult:
    blocks: int
    events: int
    stored: int
    seconds: float


async def write_windows(
    whole: BlockRange,
    results: asyncio.Queue[Fetched | None],
    *,
    sink: BackfillSink,
    state: ChainState,
    metrics: Metrics,
    progress: Progress,
    totals: BackfillResult,
    budget: LogBudget,
    write_batch: int,
    on_window: Callable[[BlockRange], Awaitable[None]] | None,
) -> None:
    """The backfill's one writer: store fetched windows in batches of about ``write_batch``
    logs (any order), give their logs back to ``budget``, and move the checkpoint over the
    contiguous prefix of stored windows, each linked by parent hash to the one below (a window
    that does not link is :class:`ChainReorged`)."""
    done: dict[int, Fetched] = {}  # completed windows by start, beyond the prefix
    prefix_end = whole.start - 1
    link = await state.known_hash(prefix_end)  # None: nothing below to link to
    finished = False
    while not finished:
        batch: list[RawLog] = []
        fetched_now: list[Fetched] = []
        item = await results.get()
        while True:
            if item is None:
                finished = True
                break
            fetched_now.append(item)
            batch.extend(item.logs)
            if len(batch) >= write_batch or results.empty():
                break
            item = await results.get()
        if not fetched_now:
            continue
        totals.stored += await sink.store(batch)
        totals.events += len(batch)
        budget.give(len(batch))
        del batch
        for fetched in fetched_now:
            window = fetched.window
            # stored: only its headers wait for the prefix (not its logs: memory)
            done[window.start] = replace(fetched, logs=[])
            metrics.blocks_backfilled_total.inc(window.span)
            totals.blocks += window.span
            progress.window(window, len(fetched.logs))
            if on_window is not None:
                await on_window(window)
        fetched_now.clear()
        while prefix_end + 1 in done:
            fetched = done.pop(prefix_end + 1)
            if link is not None and fetched.first.parent_hash != link:
                raise ChainReorged(
                    f"block {fetched.first.number} ({fetched.first.hash[:10]}) does not "
                    f"link to block {prefix_end} ({link[:10]}) we hold",
                    from_number=prefix_end,
                )
            await state.record_blocks(fetched.evidence)
            await sink.advance(fetched.last)
            prefix_end, link = fetched.last.number, fetched.last.hash
    if prefix_end != whole.end:
        raise FatalError(f"backfill ended at block {prefix_end}, short of {whole.end}")
