"""Issue 9: the chain writer commits raw logs and checkpoint moves at ``synchronous=NORMAL``.

A power cut can then lose a suffix of the write-ahead log back to its last fsync, which every FULL
commit (the drain's, the executions') makes: only commits of the chain writer that nobody acted
on, the checkpoint moves among them, so a restart fetches the lost blocks again.

The test: ``bot backfill`` books a first part of the fills (its WAL folded into the database
file when it exits); the rest are made while it is down; then, while a reader holds the WAL
unfolded (a read transaction opened on the empty WAL: no checkpoint may copy a frame into the file
while it lasts, none runs when the bot closes), ``bot backfill`` books the rest, so the WAL holds
each commit of that run in order. Copies of the database with the WAL cut back into the backfill
stand for what a power cut may leave: right after a commit, inside a transaction (short of its
commit frame), and through the middle of a commit frame (a torn write). Each copy opens clean,
its checkpoint below the uncut one and every commit of the drain's connection still there;
``bot backfill`` on it fetches from its checkpoint on and ends with exactly the rows of the uncut
run.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiosqlite

from bot.core.heads import BlockRef, Head
from bot.core.model import RawLog
from bot.devnet.plan import PlannedTx, expected_net, make_plan, our_share_deltas
from bot.devnet.simulate import run_plan
from bot.devnet.synthetic import ORDERBOOK, OWNER
from bot.store.chain_state import ChainStore
from bot.store.connection import ServedChain, open_database
from tests.store.wal_cut import FRAME_HEADER, Frame, WalLayout, cut_copy, open_copy, read_layout
from tests.support.botproc import bot_backfill, write_config
from tests.support.chain import Chain

SEED = 909  # the fills; the cut points are derived from the WAL, not drawn
FILLS = 36
GAP_BLOCKS = 12  # empty blocks between clusters of fills: more windows to cut between
BATCH_BLOCKS = 5  # small windows: many checkpoint moves in the backfill
# what only the chain writer (the NORMAL connection) writes; everything else is the drain's side
CHAIN_TABLES = {"events", "checkpoint", "recent_blocks", "event_sightings", "dead_letters"}

STATE_QUERIES = {
    "checkpoint": "SELECT block_number, block_hash FROM checkpoint",
    "events": "SELECT tx_hash, log_index, block_number, block_hash, tx_index, status, inclusion,"
    " is_ours, compensate, attempts, reason FROM events ORDER BY block_number, log_index",
    "trades": "SELECT tx_hash, log_index, side, inclusion, kind, block_number, block_hash, ticker,"
    " shares, direction, price_usdc, usdc_amount, late FROM trades"
    " ORDER BY block_number, log_index, side",
    "lots": "SELECT t.tx_hash, t.log_index, t.side, l.ticker, l.direction, l.size, l.price_usdc,"
    " l.closed, l.linked, l.is_open FROM lots l JOIN trades t ON t.id = l.trade_id"
    " ORDER BY t.block_number, t.log_index, t.side",
    "positions": "SELECT ticker, onchain_net, hedged, in_flight, consecutive_rejections, parked"
    " FROM positions ORDER BY ticker",
    "executions": "SELECT ticker, direction, shares, status, filled_shares, avg_price"
    " FROM executions ORDER BY id",
}


def _bot_backfill(config: Path, *args: str) -> dict[str, Any]:
    # the drain books only after the backfill here (backfill.drain_behind = false): a drain
    # pass behind the checkpoint commits FULL, which makes every earlier commit durable, so a
    # power cut could then only lose the backfill's tail after its last pass; without it the
    # whole backfill is NORMAL commits and a cut may land anywhere in it
    return bot_backfill(config, *args, env={"BOT__BACKFILL__DRAIN_BEHIND": "false"})[0]


def _head(chain: Chain) -> int:
    return int(chain.rpc.call("eth_blockNumber", []), 16)


def _fill(chain: Chain, plan: list[PlannedTx], clusters: int) -> int:
    """``plan`` in ``clusters`` runs of fills, empty blocks before each; returns the head."""
    for index in range(clusters):
        chain.rpc.call("anvil_mine", [hex(GAP_BLOCKS)])
        part = plan[index * len(plan) // clusters : (index + 1) * len(plan) // clusters]
        run_plan(chain.rpc, chain.deployment, part)
    return _head(chain)


@contextmanager
def _wal_held(db: Path) -> Iterator[None]:
    """No frame leaves the WAL while this lasts: a read transaction begun on an empty WAL reads
    the database file only, so no checkpoint may write into it, and the bot's last close (which
    would fold the WAL in) finds the database in use. The WAL is folded in when this ends."""
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0 and frames == copied, (busy, frames, copied)
        wal = Path(f"{db}-wal")
        assert not wal.exists() or wal.stat().st_size == 0
        conn.execute("BEGIN")
        conn.execute("SELECT COUNT(*) FROM checkpoint").fetchone()
        yield
        conn.execute("ROLLBACK")


def _state(conn: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    return {name: conn.execute(sql).fetchall() for name, sql in STATE_QUERIES.items()}


def _drain_side(conn: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every row the chain writer does not write: what FULL commits wrote."""
    tables = [
        str(name)
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
        if name not in CHAIN_TABLES
    ]
    side = {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}
    side["meta"] = [row for row in side["meta"] if row[0] != "head_block"]  # the writer's
    side["events the drain marked"] = conn.execute(
        "SELECT tx_hash, log_index, status, is_ours, attempts, reason FROM events"
        " WHERE status != 'pending'"
        # a log of another owner is stored processed by the writer, not marked by the drain
        " AND NOT (status = 'processed' AND is_ours = 0 AND owners IS NOT NULL)"
        " ORDER BY tx_hash, log_index"
    ).fetchall()
    return side


@dataclass
class Probed:
    """What a copy cut at ``cut`` holds, read on a scratch copy (reading it folds its WAL)."""

    cut: int
    integrity: list[tuple[Any, ...]]
    pages: int
    checkpoint: int
    drain_side: dict[str, list[tuple[Any, ...]]]


def _probe(db: Path, wal: bytes, cut: int, scratch: Path) -> Probed:
    copy = cut_copy(db, wal, cut, scratch / "bot.db")
    try:
        with closing(open_copy(copy)) as conn:
            return Probed(
                cut,
                conn.execute("PRAGMA integrity_check").fetchall(),
                int(conn.execute("PRAGMA page_count").fetchone()[0]),
                int(conn.execute("SELECT block_number FROM checkpoint").fetchone()[0]),
                _drain_side(conn),
            )
    finally:
        shutil.rmtree(scratch)


def _cut_points(layout: WalLayout, backfill: list[Frame]) -> dict[str, int]:
    """Three cuts inside the backfill: right after a commit, after the first frame of a
    transaction of several frames, and through the middle of a commit frame."""
    assert len(backfill) >= 8, f"only {len(backfill)} commits inside the backfill"
    after_commit = backfill[len(backfill) // 4].end
    inside = next(
        frame.end
        for commit in backfill[len(backfill) // 2 :]
        for frame in layout.frames[commit.index + 1 : commit.index + 2]
        if not frame.commit
    )
    torn = backfill[3 * len(backfill) // 4]
    return {
        "after a commit": after_commit,
        "inside a transaction": inside,
        "through a commit frame": torn.start + FRAME_HEADER + layout.page_size // 2,
    }


def test_a_wal_cut_back_in_the_backfill_is_fetched_again(chain: Chain, tmp_path: Path) -> None:
    plan = make_plan(seed=SEED, fills=FILLS)
    split = len(plan) // 3
    database = tmp_path / "run" / "bot.db"
    database.parent.mkdir()

    def config_for(db: Path) -> Path:
        return write_config(
            db.with_suffix(".toml"),
            chain.deployment,
            ws_url=chain.ws_url,
            database=db,
            confirmations=0,
            workers=2,
            batch_blocks=BATCH_BLOCKS,
        )

    mid = _fill(chain, plan[:split], 1)
    first = _bot_backfill(config_for(database))
    assert first["processed_up_to"] == mid
    head = _fill(chain, plan[split:], 3)  # made while the bot is down
    with _wal_held(database):
        second = _bot_backfill(config_for(database))
        assert second["to"] == head and second["processed_up_to"] == head
        uncut = tmp_path / "uncut.db"  # the database file alone: the second run is in the WAL
        shutil.copyfile(database, uncut)
        wal = Path(f"{database}-wal").read_bytes()
    with closing(sqlite3.connect(database)) as conn:
        reference = _state(conn)

    # the reference run is right: every log once, every fill of ours booked once, exact nets
    logs = chain.rpc.call(
        "eth_getLogs",
        [{"address": chain.deployment.orderbook, "fromBlock": "0x0", "toBlock": hex(head)}],
    )
    assert len(reference["events"]) == len(logs)
    assert {(e[0], e[1]) for e in reference["events"]} == {
        (log["transactionHash"], int(log["logIndex"], 16)) for log in logs
    }
    assert all(e[5] == "processed" for e in reference["events"])
    assert len(reference["trades"]) == sum(len(our_share_deltas(tx)) for tx in plan)
    nets = {ticker: Decimal(net) for ticker, net, *_rest in reference["positions"]}
    assert nets == expected_net(plan)
    assert reference["checkpoint"][0][0] == head

    # the WAL of the second run, commit by commit: find the commits made inside the backfill
    layout = read_layout(wal)
    commits = layout.commits
    assert commits and commits[-1].end == len(wal), "the WAL ends with a whole transaction"
    probed = {c.index: _probe(uncut, wal, c.end, tmp_path / "probe") for c in commits}
    end_of_backfill = next(c for c in commits if probed[c.index].checkpoint == head)
    before_drain = probed[end_of_backfill.index].drain_side
    backfill = [c for c in commits if mid < probed[c.index].checkpoint < head]
    cuts = _cut_points(layout, backfill)
    print(
        f"WAL of the second run: {len(layout.frames)} frames of {layout.page_size} B, "
        f"{len(commits)} commits, {len(backfill)} inside the backfill; cuts {cuts}"
    )

    for name, cut in cuts.items():
        kept = layout.last_commit_before(cut)
        assert kept is not None
        at_cut = _probe(uncut, wal, cut, tmp_path / "probe")
        assert at_cut.integrity == [("ok",)], (name, at_cut.integrity)
        # SQLite read the WAL exactly up to the last whole commit before the cut
        assert at_cut.pages == kept.db_pages, name
        assert at_cut.checkpoint == probed[kept.index].checkpoint, name
        assert at_cut.drain_side == probed[kept.index].drain_side, name
        # the cut lost something (else this could not fail), and never the first run's work
        assert mid <= at_cut.checkpoint < head, (name, at_cut.checkpoint)
        # a power cut keeps every FULL commit: the part cut off holds only the chain writer's
        assert at_cut.drain_side == before_drain, f"{name}: the cut lost a commit of the drain"

        copy = cut_copy(uncut, wal, cut, tmp_path / f"cut-{kept.index}" / "bot.db")
        again = _bot_backfill(config_for(copy))
        assert again["from"] == at_cut.checkpoint + 1, (name, again)  # the lost tail, again
        assert again["to"] == head and again["processed_up_to"] == head, (name, again)
        with closing(sqlite3.connect(copy)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)], name
            restarted = _state(conn)
        for table, rows in reference.items():
            assert restarted[table] == rows, f"{name}: {table} differs from the uncut run"


def _hash(tag: str) -> str:
    return "0x" + tag.encode().hex().ljust(64, "0")[:64]


def _log(tx: str, block: int, block_hash: str, *, removed: bool = False) -> RawLog:
    return RawLog(block, block_hash, _hash(tx), 0, 0, ORDERBOOK, "0x" + "11" * 32, b"\x01", removed)


async def _level(conn: aiosqlite.Connection) -> str:
    rows = list(await conn.execute_fetchall("PRAGMA synchronous"))
    return {1: "NORMAL", 2: "FULL"}[int(rows[0][0])]


async def test_the_chain_writer_relaxes_only_what_a_restart_fetches_again(tmp_path: Path) -> None:
    served = ServedChain(31337, ORDERBOOK, OWNER, 0)
    drain_conn, _meta = await open_database(tmp_path / "bot.db", served)
    store = await ChainStore.open(tmp_path / "bot.db")
    writer = store.connection
    try:
        assert await _level(writer) == "FULL"  # as every connection opens
        steps: list[tuple[str, Callable[[], Awaitable[object]], str]] = [
            ("store", lambda: store.store([_log("a", 5, _hash("B5"))]), "NORMAL"),
            (
                "record_blocks",
                lambda: store.record_blocks([Head(5, _hash("B5"), _hash("B4"))]),
                "NORMAL",
            ),
            ("advance", lambda: store.advance(Head(5, _hash("B5"), _hash("B4"))), "NORMAL"),
            ("dead_letter", lambda: store.dead_letter("subscription", {"x": 1}, "bad"), "FULL"),
            (
                "reconcile",
                lambda: store.reconcile(
                    Head(6, _hash("B6"), _hash("B5")), [_log("b", 6, _hash("B6"))]
                ),
                "NORMAL",
            ),
            (
                "hint above the checkpoint",
                lambda: store.store_hint([_log("c", 7, _hash("B7"))]),
                "NORMAL",
            ),
            ("late canonical hint", lambda: store.store_hint([_log("d", 6, _hash("B6"))]), "FULL"),
            ("record_head", lambda: store.record_head(Head(7, _hash("B7"), _hash("B6"))), "NORMAL"),
            ("off-chain late hint", lambda: store.store_hint([_log("e", 5, _hash("X5"))]), "FULL"),
            (
                "removed mark",
                lambda: store.store_hint([_log("c", 7, _hash("B7"), removed=True)]),
                "FULL",
            ),
            (
                "rollback",
                lambda: store.rollback(BlockRef(5, _hash("B5")), {6: _hash("Y6")}),
                "NORMAL",
            ),
        ]
        for name, step, level in steps:
            await step()
            assert await _level(writer) == level, name
            assert await _level(drain_conn) == "FULL", name  # another connection: untouched
        assert await store.checkpoint() == BlockRef(5, _hash("B5"))
    finally:
        await writer.close()
        await drain_conn.close()
