"""Live following (SPEC §7): every new head is linked to the checkpoint by its parent hash and
reconciled (its ``logsBloom``, else ``eth_getLogs{blockHash}``) before the checkpoint moves over
it. A hash that disagrees is a reorg: walk back to the fork point, roll the queue back to it
(processed events get compensating trades from the drain), and reconcile the new branch
(:mod:`bot.sync.forks`, shared with the backfill, which links its own moves the same way).

The by-hash read of a head's logs may be started early (:class:`LogsAhead`: when a log hint or
the head itself arrives), so its round trip overlaps the hint's commit instead of following it.
An answer for a block hash is that block's logs whenever it is asked (a hash names one block's
contents; a provider that does not know the hash answers an error, never ``[]``), so an early
answer reconciles the head exactly as a late one would, and the same checks follow it.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable

from loguru import logger

from bot.chain.blocks import LogFilter, get_header, get_logs_by_hash
from bot.chain.endpoint import Endpoint, Lane
from bot.core.bloom import may_have_logs
from bot.core.heads import BlockRef, Head, Verdict, judge
from bot.core.model import RawLog
from bot.core.ranges import BlockRange
from bot.errors import BlockReplaced, FatalError, MissingLogError, ReorgTooDeepError
from bot.sync.backfill import Backfill
from bot.sync.forks import MAX_REORG_DEPTH, ChainState, rewind, vouch

__all__ = ["MAX_REORG_DEPTH", "ChainState", "Follower", "LogsAhead", "ReorgTooDeepError"]

LOOK_AHEAD_KEPT = 64
"""Early reads kept waiting for their head; the oldest is cancelled past this (a hash that
never becomes a head we reconcile, such as a block reorged away, must not pile up)."""


class LogsAhead:
    """``eth_getLogs{blockHash}`` started before the head is reconciled, taken once by hash.

    Rules: one read per hash; :meth:`take` hands a read over (it is gone from here, so a retry
    after a failed or short answer reads again); at most :data:`LOOK_AHEAD_KEPT` wait, the
    oldest is cancelled beyond; :meth:`clear` cancels all (a closed feed, the end of ``run``).
    A failed read raises where the follower awaits it, as the read it replaces would have.
    """

    def __init__(
        self, endpoint: Endpoint, log_filter: LogFilter, *, kept: int = LOOK_AHEAD_KEPT
    ) -> None:
        self._endpoint = endpoint
        self._filter = log_filter
        self._kept = kept
        self._reads: OrderedDict[str, asyncio.Task[list[RawLog]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._reads)

    def start(self, block_hash: str, number: int) -> None:
        """Read the logs of block ``block_hash`` (at height ``number``) unless already asked."""
        if block_hash in self._reads:
            return
        read = asyncio.ensure_future(
            get_logs_by_hash(self._endpoint, self._filter, block_hash, number=number)
        )
        read.add_done_callback(_retrieved)
        self._reads[block_hash] = read
        while len(self._reads) > self._kept:
            _hash, oldest = self._reads.popitem(last=False)
            oldest.cancel()

    def note(self, item: RawLog | Head) -> None:
        """Read ahead for a log hint's block, or for a head whose bloom may hold our logs (the
        follower reads both when it reconciles the head)."""
        if isinstance(item, Head):
            if needs_logs(item, self._filter):
                self.start(item.hash, item.number)
        elif not item.removed:
            self.start(item.block_hash, item.block_number)

    def take(self, block_hash: str) -> asyncio.Task[list[RawLog]] | None:
        return self._reads.pop(block_hash, None)

    def clear(self) -> None:
        reads = list(self._reads.values())
        self._reads.clear()
        for read in reads:
            read.cancel()


def _retrieved(read: asyncio.Task[list[RawLog]]) -> None:
    # a read nobody takes (cancelled, or its head never came) must not be reported as an
    # exception never retrieved; the one that is taken raises to its taker all the same
    if not read.cancelled():
        read.exception()


def needs_logs(head: Head, log_filter: LogFilter) -> bool:
    """Whether reconciling ``head`` needs its logs read: no bloom, or one that may hold ours."""
    return not head.logs_bloom or may_have_logs(
        head.logs_bloom, log_filter.address, log_filter.topics
    )


class Follower:
    def __init__(
        self,
        endpoint: Endpoint,
        state: ChainState,
        log_filter: LogFilter,
        backfill: Backfill,
        *,
        gap_by_range_over: int = 16,
    ) -> None:
        self._endpoint = endpoint
        self._state = state
        self._filter = log_filter
        self._backfill = backfill
        self.on_reorg: Callable[[int, int], None] | None = None  # (depth, fork point block)
        self.ahead: LogsAhead | None = None  # reads started early, taken by hash when due
        self._gap_by_range_over = gap_by_range_over
        self.reorgs = 0

    async def on_head(self, head: Head) -> None:
        """Bring the checkpoint to ``head`` (or leave it where it is when it is known)."""
        checkpoint = await self._state.checkpoint()
        if checkpoint is None:
            raise FatalError("following heads needs a checkpoint: backfill first")
        held = (
            await self._state.known_hash(head.number) if head.number <= checkpoint.number else None
        )
        verdict = judge(head, checkpoint, lambda _number: held)
        if verdict is Verdict.KNOWN:
            return
        if verdict is Verdict.GAP:
            await self._fill_gap(checkpoint, head)
            checkpoint = await self._require_checkpoint()
            verdict = judge(head, checkpoint, lambda _number: None)
        if verdict is Verdict.REORG:
            await self._reorg(head, checkpoint)
            return
        if verdict is Verdict.EXTEND:
            await self._reconcile(head)

    async def _require_checkpoint(self) -> BlockRef:
        checkpoint = await self._state.checkpoint()
        if checkpoint is None:
            raise FatalError("checkpoint vanished while following heads")
        return checkpoint

    async def _reconcile(self, head: Head) -> None:
        logs: list[RawLog] = []
        early = self.ahead.take(head.hash) if self.ahead is not None else None
        try:
            if needs_logs(head, self._filter):
                logs = await (
                    early
                    if early is not None
                    else get_logs_by_hash(
                        self._endpoint, self._filter, head.hash, number=head.number
                    )
                )
            elif early is not None:
                early.cancel()
            # a queued row of this block the answer lacks is re-read, never dropped
            logs, _headers = await vouch(
                self._endpoint,
                self._state,
                self._filter,
                BlockRange(head.number, head.number),
                canonical={head.number: head.hash},
                logs=logs,
                lane=Lane.LIVE,
            )
        except MissingLogError as missing:
            # a loud error (SPEC §6): the checkpoint stays below this block; the live loop retries
            logger.error("head {} not reconciled: {}", head.number, missing)
            raise
        except BlockReplaced as replaced:
            # the head left the chain while we read it (SPEC §6: re-read by number, another
            # hash is a reorg): follow the block that replaced it instead
            logger.warning("head {} left the chain while reconciling it: {}", head.number, replaced)
            await self.on_head(replaced.canonical)
            return
        await self._state.reconcile(head, logs)

    async def _fill_gap(self, checkpoint: BlockRef, head: Head) -> None:
        """Blocks between the checkpoint and ``head`` that no head told us about."""
        first, last = checkpoint.number + 1, head.number - 1
        if last - first + 1 > self._gap_by_range_over:
            logger.info("catching up blocks {}-{} before head {}", first, last, head.number)
            await self._backfill.run(first, last, head=head.number)
            return
        unlinked = await self._walk(first, last)
        if unlinked is not None:
            await self._reorg(unlinked, await self._require_checkpoint())

    async def _walk(self, first: int, last: int) -> Head | None:
        """Reconcile the canonical headers ``first..last`` in order, each linked to the
        checkpoint by its parent hash; the first one that does not link is returned."""
        for number in range(first, last + 1):
            header = await get_header(self._endpoint, number)
            current = await self._require_checkpoint()
            if header.parent_hash != current.hash:
                return header
            await self._reconcile(header)
        return None

    async def _reorg(self, head: Head, checkpoint: BlockRef) -> None:
        logger.warning(
            "reorg: head {} ({}) does not link to our chain at block {}; finding the fork point",
            head.number,
            head.hash[:10],
            checkpoint.number,
        )
        # walk down from the checkpoint itself: a stale head is no evidence against our chain,
        # and every height read on the way is evidence for the rollback
        # one provider's hashes only: another one's `unknown block` is no evidence of a reorg
        ancestor = await rewind(self._endpoint.pinned(), self._state, checkpoint.number)
        self.reorgs += 1
        if self.on_reorg is not None:
            self.on_reorg(checkpoint.number - ancestor.number, ancestor.number)
        unlinked = await self._walk(ancestor.number + 1, head.number)
        if unlinked is not None:
            # the chain moved again while we walked: the next head will sort it out
            logger.warning("chain changed again at block {} during reorg handling", unlinked.number)
