"""ChainStore on a real SQLite file: canonical writes, reconciliation, rollback, hints."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot.core.heads import BlockRef, Head
from bot.core.model import RawLog
from bot.devnet.synthetic import ORDERBOOK, OWNER
from bot.store.chain_state import ChainStore
from bot.store.connection import ServedChain, open_database


def h(tag: str) -> str:
    return "0x" + tag.encode().hex().ljust(64, "0")[:64]


def log(tx: str, index: int, block: int, block_hash: str, *, removed: bool = False) -> RawLog:
    return RawLog(block, block_hash, h(tx), 0, index, ORDERBOOK, "0x" + "11" * 32, b"\x01", removed)


def head(number: int, tag: str, parent: str = "p") -> Head:
    return Head(number, h(tag), h(parent))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ChainStore]:
    conn, _meta = await open_database(tmp_path / "bot.db", ServedChain(31337, ORDERBOOK, OWNER, 0))
    try:
        yield ChainStore(conn)
    finally:
        await conn.close()


def rows(store: ChainStore, db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return list(
            conn.execute(
                "SELECT tx_hash, log_index, block_number, block_hash, status, inclusion,"
                " compensate FROM events ORDER BY tx_hash, log_index"
            )
        )


async def mark_processed(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE events SET status = 'processed'")


async def test_canonical_store_is_idempotent_and_moves_a_row_to_its_new_block(
    store: ChainStore, tmp_path: Path
) -> None:
    db = tmp_path / "bot.db"
    assert await store.store([log("a", 0, 5, h("X")), log("a", 1, 5, h("X"))]) == 2
    assert await store.store([log("a", 0, 5, h("X"))]) == 0  # overlap: nothing new
    await mark_processed(db)
    # the same log now canonical in another block: removed (owed a compensation), revived
    assert await store.store([log("a", 0, 6, h("Y"))]) == 1
    assert rows(store, db) == [
        (h("a"), 0, 6, h("Y"), "pending", 1, 1),
        (h("a"), 1, 5, h("X"), "processed", 0, 0),
    ]


async def test_reconcile_removes_other_hashes_at_that_height_and_moves_the_checkpoint(
    store: ChainStore, tmp_path: Path
) -> None:
    db = tmp_path / "bot.db"
    stale = log("hint", 0, 9, h("loser"))
    assert await store.store_hint([stale]) == 1  # a live hint from a fork that lost
    assert await store.reconcile(head(9, "winner"), [log("b", 0, 9, h("winner"))]) == 1
    assert rows(store, db) == [
        (h("b"), 0, 9, h("winner"), "pending", 0, 0),
        (h("hint"), 0, 9, h("loser"), "removed", 0, 0),  # never processed: nothing owed
    ]
    assert await store.checkpoint() == BlockRef(9, h("winner"))
    assert await store.known_hash(9) == h("winner")
    with pytest.raises(ValueError, match="another block hash"):
        await store.reconcile(head(10, "z"), [log("c", 0, 10, h("other"))])


async def test_rollback_flags_processed_rows_and_forgets_blocks_above_the_fork(
    store: ChainStore, tmp_path: Path
) -> None:
    db = tmp_path / "bot.db"
    for number in (10, 11, 12):
        await store.reconcile(
            head(number, f"b{number}"), [log(f"t{number}", 0, number, h(f"b{number}"))]
        )
    await mark_processed(db)
    # the fork-point walk read the new hashes of 11 and 12
    assert await store.rollback(BlockRef(10, h("b10")), {11: h("n11"), 12: h("n12")}) == 2
    assert [r[4:] for r in rows(store, db)] == [
        ("processed", 0, 0),
        ("removed", 0, 1),
        ("removed", 0, 1),
    ]
    assert await store.checkpoint() == BlockRef(10, h("b10"))
    assert await store.known_hash(11) is None
    # the same transaction re-included on the new branch is revived, once
    assert await store.reconcile(head(11, "n11", "b10"), [log("t11", 0, 11, h("n11"))]) == 1
    revived = next(r for r in rows(store, db) if r[0] == h("t11"))
    assert revived == (h("t11"), 0, 11, h("n11"), "pending", 1, 1)


async def test_removed_hint_marks_only_the_matching_block(
    store: ChainStore, tmp_path: Path
) -> None:
    db = tmp_path / "bot.db"
    await store.store([log("d", 0, 20, h("B"))])
    await mark_processed(db)
    await store.store_hint([log("d", 0, 20, h("other"), removed=True)])  # another block: ignored
    assert rows(store, db)[0][4:] == ("processed", 0, 0)
    await store.store_hint([replace(log("d", 0, 20, h("B")), removed=True)])
    assert rows(store, db)[0][4:] == ("removed", 0, 1)


async def test_head_block_is_recorded_for_status(store: ChainStore, tmp_path: Path) -> None:
    await store.record_head(head(42, "h42"))
    with sqlite3.connect(tmp_path / "bot.db") as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'head_block'").fetchone() == ("42",)


async def test_dead_letters_keep_the_payload_and_reason(store: ChainStore, tmp_path: Path) -> None:
    await store.dead_letter("subscription", {"oops": 1}, "no blockNumber")
    with sqlite3.connect(tmp_path / "bot.db") as conn:
        assert conn.execute("SELECT source, payload, reason FROM dead_letters").fetchall() == [
            ("subscription", '{"oops": 1}', "no blockNumber")
        ]


async def states(db: Path) -> dict[str, tuple[str, int]]:
    with sqlite3.connect(db) as conn:
        found = conn.execute("SELECT tx_hash, status, compensate FROM events").fetchall()
    return {str(tx): (str(status), int(owed)) for tx, status, owed in found}


async def test_advance_removes_rows_whose_height_has_another_recorded_hash(
    store: ChainStore, tmp_path: Path
) -> None:
    """Finding 5: a ranged window's move removes rows of a losing fork at the heights it
    covers (hash evidence: the recorded canonical header), and only those."""
    db = tmp_path / "bot.db"
    await store.advance(head(4, "b4"))
    await store.store([log("lost", 0, 5, h("old5")), log("kept", 0, 6, h("b6"))])
    await store.store([log("later", 0, 8, h("old8"))])
    await mark_processed(db)
    await store.record_blocks([head(5, "b5", "b4"), head(6, "b6", "b5")])
    await store.advance(head(6, "b6", "b5"))
    assert await states(db) == {
        h("lost"): ("removed", 1),  # processed: its compensation is owed
        h("kept"): ("processed", 0),
        h("later"): ("processed", 0),  # above the checkpoint: judged when it gets there
    }
    assert await store.checkpoint() == BlockRef(6, h("b6"))


async def test_rollback_removes_only_rows_whose_height_has_another_canonical_hash(
    store: ChainStore, tmp_path: Path
) -> None:
    """Finding 6: heights the walk read with our hash, and heights it could not read, keep
    their rows; the checkpoint and the recorded blocks go back to the fork point."""
    db = tmp_path / "bot.db"
    for number in (10, 11, 12, 13):
        await store.reconcile(
            head(number, f"b{number}", f"b{number - 1}"),
            [log(f"t{number}", 0, number, h(f"b{number}"))],
        )
    await mark_processed(db)
    removed = await store.rollback(BlockRef(10, h("b10")), {11: h("n11"), 12: h("b12")})
    assert removed == 1
    assert await states(db) == {
        h("t10"): ("processed", 0),
        h("t11"): ("removed", 1),
        h("t12"): ("processed", 0),
        h("t13"): ("processed", 0),
    }
    assert await store.checkpoint() == BlockRef(10, h("b10"))
    assert [await store.known_hash(n) for n in (10, 11, 12)] == [h("b10"), None, None]


async def test_a_late_hint_is_queued_only_with_the_canonical_hash(
    store: ChainStore, tmp_path: Path
) -> None:
    """Finding 5: a live log at or below the checkpoint whose block hash is not the one we
    hold is recorded as a sighting, never queued (the drain would book it)."""
    db = tmp_path / "bot.db"
    await store.reconcile(head(19, "b19", "b18"), [])
    await store.reconcile(head(20, "b20", "b19"), [])
    assert await store.store_hint([log("same", 0, 19, h("b19"))]) == 1
    assert await store.store_hint([log("fork", 0, 19, h("f19"))]) == 0
    assert await store.store_hint([log("deep", 0, 3, h("b3"))]) == 0  # older than we track
    assert await store.store_hint([log("next", 0, 21, h("x21"))]) == 1
    assert sorted(await states(db)) == sorted([h("same"), h("next")])
    with sqlite3.connect(db) as conn:
        seen = conn.execute(
            "SELECT tx_hash, block_hash FROM event_sightings ORDER BY id"
        ).fetchall()
    assert seen == [(h("fork"), h("f19")), (h("deep"), h("b3"))]


async def test_first_unlinked_finds_the_lowest_recorded_break(store: ChainStore) -> None:
    await store.record_blocks(
        [
            head(30, "b30", "b29"),
            head(31, "b31", "b30"),
            head(32, "n32", "n31"),
            Head(33, h("n33"), ""),
        ]
    )
    await store.advance(head(34, "n34", "n33"))
    assert await store.first_unlinked() == 32
    await store.record_blocks([head(32, "b32", "b31")])
    assert await store.first_unlinked() is None  # 33 records a hash only: not a break
