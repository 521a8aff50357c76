"""Reorg handling shared by live following and the backfill (SPEC §7).

The checkpoint moves from H to H+1 only when H+1's parent hash is H's stored hash; when it is not,
the chain reorganised under us. Then: walk back from the checkpoint, comparing the canonical
header at each height with the hash we stored, to the highest block that still matches (the
fork point); roll the queue back to it, removing only rows whose height now has another
canonical hash (hash evidence: a row merely unconfirmed is left for the next reconciliation to
judge); and fetch again from the block after it.

A row merely missing from an answer is no evidence (a lagging provider answers ``[]`` for blocks
it has not seen): :func:`vouch` re-reads its block by hash, and a row still missing from a
canonical block is a :class:`MissingLogError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from loguru import logger

from bot.chain.blocks import LogFilter, get_header, get_header_or_none, get_logs_by_hash
from bot.chain.endpoint import Endpoint, Lane
from bot.core.heads import BlockRef, Head
from bot.core.model import RawLog
from bot.core.ranges import BlockRange
from bot.errors import MissingLogError, ReorgTooDeepError
from bot.store.chain_state import RECENT_BLOCKS_KEPT, QueuedKey

MAX_REORG_DEPTH = RECENT_BLOCKS_KEPT  # we cannot find a fork point below the hashes we keep


@runtime_checkable
class ChainState(Protocol):
    """The store's side of following the chain (implemented by ``ChainStore``)."""

    async def checkpoint(self) -> BlockRef | None: ...

    async def known_hash(self, number: int) -> str | None:
        """Our canonical hash of block ``number``, if we still track it."""
        ...

    async def reconcile(self, head: Head, logs: list[RawLog]) -> int:
        """Atomically: queue rows of block ``head.number`` with another hash become removed,
        ``logs`` are stored as canonical (reviving removed rows), the block is recorded and the
        checkpoint moves to it. Returns the number of rows newly stored or revived."""
        ...

    async def record_blocks(self, headers: Sequence[Head]) -> None:
        """Remember ``headers`` as the canonical blocks at their heights (before the checkpoint
        moves over them: moving it removes rows there with another hash)."""
        ...

    async def rollback(self, ancestor: BlockRef, canonical: Mapping[int, str]) -> int:
        """Atomically: rows above ``ancestor`` whose height has another hash in ``canonical``
        become removed (processed ones flagged for compensation), recorded blocks above it are
        forgotten, the checkpoint moves back to it. Returns the number of rows removed."""
        ...

    async def queued_between(self, first: int, last: int) -> list[QueuedKey]:
        """Queue rows (not removed) of blocks ``first..last``."""
        ...

    async def first_unlinked(self) -> int | None:
        """The lowest recorded block at or below the checkpoint whose parent hash is not the
        recorded hash below it (the trace of a reorg the checkpoint moved over), or None."""
        ...


async def resume_point(
    endpoint: Endpoint, state: ChainState, start: int, *, lane: Lane = Lane.LIVE
) -> int:
    """Where a run that would start at ``start`` (the block after the checkpoint) must start:
    lower when the blocks recorded below the checkpoint do not link (a reorg the checkpoint
    moved over before its moves were linked), after rolling back to the fork point."""
    checkpoint = await state.checkpoint()
    if checkpoint is None or checkpoint.number != start - 1:
        return start
    unlinked = await state.first_unlinked()
    if unlinked is None:
        return start
    logger.warning(
        "recorded block {} does not link to block {}: re-checking the chain below it",
        unlinked,
        unlinked - 1,
    )
    ancestor = await rewind(endpoint, state, unlinked - 1, lane=lane)
    return ancestor.number + 1


async def rewind(
    endpoint: Endpoint, state: ChainState, start: int, *, lane: Lane = Lane.LIVE
) -> BlockRef:
    """Find the fork point at or below ``start`` and roll the queue back to it."""
    canonical: dict[int, str] = {}
    floor = max(-1, start - MAX_REORG_DEPTH)
    for number in range(start, floor, -1):
        header = await get_header_or_none(endpoint, number, lane=lane)
        if header is None:
            continue  # no block there any more (a shorter chain): no evidence either way
        canonical[number] = header.hash
        if await state.known_hash(number) == header.hash:
            ancestor = BlockRef(number, header.hash)
            removed = await state.rollback(ancestor, canonical)
            logger.warning(
                "reorg: blocks above {} ({}) left the chain; rolled back to it ({} events removed)",
                number,
                header.hash[:10],
                removed,
            )
            return ancestor
    raise ReorgTooDeepError(
        f"reorg below block {floor + 1}: no tracked block matches the chain any more; stop, "
        "check the node, then restart (the queue is intact)"
    )


async def vouch(
    endpoint: Endpoint,
    state: ChainState,
    log_filter: LogFilter,
    blocks: BlockRange,
    *,
    canonical: dict[int, str],
    logs: list[RawLog],
    lane: Lane = Lane.BACKFILL,
) -> tuple[list[RawLog], list[Head]]:
    """Account for every queued row of ``blocks`` that ``logs`` (their logs) lacks: a row
    of a block with another canonical hash is left for the checkpoint move to remove (the
    headers read to know it are returned, to be recorded); a row of a canonical block is
    re-read by hash and added, or is a :class:`MissingLogError` — never a removal."""
    queued = await state.queued_between(blocks.start, blocks.end)
    if not queued:  # a first catch-up: nothing queued to account for (no 40k-entry set)
        return logs, []
    answered = {(log.tx_hash, log.log_index) for log in logs}
    missing = [row for row in queued if row[:2] not in answered]
    headers: list[Head] = []
    found: list[RawLog] = []
    for number in sorted({row[2] for row in missing}):
        block_hash = canonical.get(number)
        if block_hash is None:
            header = await get_header(endpoint, number, lane=lane)
            headers.append(header)
            block_hash = canonical[number] = header.hash
        ours = [row for row in missing if row[2] == number and row[3] == block_hash]
        if not ours:
            continue  # another canonical hash there: hash evidence, removed on the move
        again = await get_logs_by_hash(endpoint, log_filter, block_hash, number=number, lane=lane)
        keys = {(log.tx_hash, log.log_index) for log in again}
        lost = [row for row in ours if row[:2] not in keys]
        if lost:
            raise MissingLogError(
                f"block {number} ({block_hash[:10]}) is canonical but its logs lack queued "
                f"log tx={lost[0][0]} log_index={lost[0][1]} (and {len(lost) - 1} more); "
                "the provider may lag: the checkpoint waits"
            )
        logger.warning(
            "eth_getLogs of blocks {} lacked {} queued log(s) of block {}: re-read by hash",
            blocks,
            len(ours),
            number,
        )
        found.extend(log for log in again if (log.tx_hash, log.log_index) not in answered)
    return logs + found, headers
