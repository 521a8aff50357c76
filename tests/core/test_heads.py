"""How a new head relates to the checkpoint (pure): the follower's first decision."""

from __future__ import annotations

import pytest

from bot.core.heads import BlockRef, Head, Verdict, judge

CHECKPOINT = BlockRef(100, "0xc100")
HELD = {99: "0xc99", 100: "0xc100"}


@pytest.mark.parametrize(
    ("head", "verdict"),
    [
        (Head(101, "0xn101", "0xc100"), Verdict.EXTEND),  # links to the checkpoint
        (Head(101, "0xn101", "0xother"), Verdict.REORG),  # next height, another parent
        (Head(105, "0xn105", "0xn104"), Verdict.GAP),  # heads we never heard about
        (Head(100, "0xc100", "0xc99"), Verdict.KNOWN),  # the same block again (anvil resends)
        (Head(99, "0xc99", "0xc98"), Verdict.KNOWN),
        (Head(99, "0xfork99", "0xc98"), Verdict.REORG),  # a known height with a new hash
        (Head(100, "0xfork100", "0xc99"), Verdict.REORG),
        (Head(50, "0xanything", "0xc49"), Verdict.KNOWN),  # older than what we track
    ],
)
def test_judge(head: Head, verdict: Verdict) -> None:
    assert judge(head, CHECKPOINT, HELD.get) is verdict
