"""Reorg handling shared by live following and the backfill (SPEC §7).

The checkpoint moves from H to H+1 only when H+1's parent hash is H's stored hash; when it is not,
the chain reorganised under us. Then: walk back from the checkpoint, comparing the canonical
header at each height with the hash we stored, to the highest block that still matches (the
fork point); roll the queue back to it, removing only rows whose height now has another
canonical hash (hash evidence: a row merely unconfirmed is left for the next reconciliation to
judge); and fetch again from the block after it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from loguru import logger

from bot.chain.blocks import get_header_or_none
from bot.chain.endpoint import Endpoint, Lane
from bot.core.heads import BlockRef, Head
from bot.core.model import RawLog
from bot.errors import FatalError, TransientError
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


class ReorgTooDeepError(FatalError):
    """No block we still track matches the canonical chain."""


class ChainReorged(TransientError):
    """A block does not link to the one stored below it: rewind from ``from_number``."""

    def __init__(self, message: str, *, from_number: int) -> None:
        super().__init__(message)
        self.from_number = from_number


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
