"""Following the chain head (pure): how a new head relates to the checkpoint (SPEC §7).

The logs subscription is only a fast hint; the record is the chain of heads. Each head must link
to the checkpoint by its parent hash before the checkpoint moves over it, so a skipped
notification or a reorg is caught within a block, from hashes alone (anvil sends no
``removed: true`` logs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class Head:
    number: int
    hash: str
    parent_hash: str
    logs_bloom: bytes = b""


@dataclass(frozen=True, slots=True)
class BlockRef:
    number: int
    hash: str


class Verdict(StrEnum):
    EXTEND = "extend"  # the next block, linked to the checkpoint: reconcile it and move on
    KNOWN = "known"  # at or below the checkpoint with the hash we hold: nothing to do
    GAP = "gap"  # beyond the next block: fetch the blocks in between first
    REORG = "reorg"  # the hashes disagree: find the fork point and roll back to it


def judge(head: Head, checkpoint: BlockRef, known_hash: Callable[[int], str | None]) -> Verdict:
    """Place ``head`` relative to ``checkpoint``; ``known_hash(n)`` is our canonical hash of n."""
    if head.number == checkpoint.number + 1:
        return Verdict.EXTEND if head.parent_hash == checkpoint.hash else Verdict.REORG
    if head.number > checkpoint.number + 1:
        return Verdict.GAP
    held = known_hash(head.number)
    if held is None or held == head.hash:
        # older than what we track, or the same block again (anvil re-sends heads)
        return Verdict.KNOWN
    return Verdict.REORG
