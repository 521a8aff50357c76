"""Reorgs while the backfill runs (SPEC §6, §7; issue 8 findings 4 and 5).

Real anvil, a real ``ChainStore`` on SQLite, the real ``Backfill``, and a loopback proxy
(``tests/support/reorg_proxy.py``) that calls ``anvil_reorg`` at an exact request of the bot, or
shows a branch of its own for one block. The oracle is the chain itself after the fact
(``tests/support/reorg_rig.py``): the queue's live rows are exactly the canonical chain's
orderbook logs, and rows are removed only where the chain holds another block. The plans are
seeded (``PLAN_SEED``, logged); the reorg instants are fixed requests, not random.
"""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from loguru import logger

import bot.sync.backfill as backfill_module
from bot.chain.blocks import LogFilter
from bot.chain.parse import parse_log
from bot.core.abi import ORDERBOOK_TOPICS
from bot.devnet.plan import make_plan
from bot.devnet.simulate import run_plan
from bot.metrics import Metrics
from bot.sync.backfill import Backfill
from tests.support.chain import Chain
from tests.support.gated_sink import GatedSink
from tests.support.history import wait_until
from tests.support.reorg_proxy import (
    Canned,
    Hook,
    ReorgProxy,
    by_hash,
    fresh_fill,
    ranged_reaching,
)
from tests.support.reorg_rig import (
    Rig,
    assert_on_the_chain,
    block_hash,
    canonical_rows,
    queue_rows,
    tip,
)

pytestmark = pytest.mark.usefixtures("short_backoff")
PLAN_SEED = 31


@pytest.fixture
def history(chain: Chain) -> Chain:
    logger.info("plan seed {}", PLAN_SEED)
    run_plan(chain.rpc, chain.deployment, make_plan(seed=PLAN_SEED, fills=10))
    return chain


# ---------------------------------------------------------------- finding 4


async def test_reorg_while_fetching_by_hash_refetches_the_new_branch(
    history: Chain, proxy: ReorgProxy, rig: Rig
) -> None:
    """Block head-2 is read by hash from the old branch, then 3 blocks are replaced (a new fill
    of ours at head-2): head-1 no longer links, so the backfill walks back and refetches."""
    chain, end = history, tip(history)
    old = block_hash(chain, end - 2)
    doomed = {row for row in canonical_rows(chain) if row[2] >= end - 2}
    assert any(row[2] == end - 2 for row in doomed)
    proxy.hooks.append(Hook(by_hash(old), proxy.reorg(3, [[fresh_fill(chain.deployment, 5), 0]])))
    await rig.backfill.run(chain.deployment.deployment_block, end)
    assert len(proxy.reorgs) == 1
    await assert_on_the_chain(chain, rig)
    assert rig.backfill.reorgs == 1
    assert any(row[2] == end - 2 for row in canonical_rows(chain) - doomed)  # the new fill
    # only the old head-2 was ever stored from the losing branch, and it alone is removed
    assert queue_rows(rig.database, removed=True) == {row for row in doomed if row[2] == end - 2}


@pytest.mark.parametrize("every_header", [True, False], ids=["recent", "deep"])
async def test_reorg_while_fetching_ranges_refetches_the_new_branch(
    history: Chain,
    proxy: ReorgProxy,
    rig: Rig,
    every_header: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Six blocks are replaced right after the ranged window holding the first of them was
    answered from the old branch; the new branch has another fill of ours there."""
    if not every_header:  # every window is "deep": only its first and last header are read
        monkeypatch.setattr(backfill_module, "RECENT_BLOCKS_KEPT", 1)
    chain, end = history, tip(history)
    depth = 6
    first_replaced = end - depth + 1
    doomed = {row for row in canonical_rows(chain) if row[2] >= first_replaced}
    proxy.hooks.append(
        Hook(
            ranged_reaching(first_replaced),
            proxy.reorg(depth, [[fresh_fill(chain.deployment, 5), 0]]),
        )
    )
    await rig.backfill.run(chain.deployment.deployment_block, end)
    assert len(proxy.reorgs) == 1
    await assert_on_the_chain(chain, rig)
    assert any(row[2] == first_replaced for row in canonical_rows(chain) - doomed)
    # whatever was stored from the losing branch is removed, nothing of the winning one
    removed = queue_rows(rig.database, removed=True)
    assert removed <= doomed and not removed & canonical_rows(chain)


@pytest.mark.parametrize("new_blocks", [2, 0])
async def test_restart_rechecks_the_recorded_chain_below_the_checkpoint(
    history: Chain, proxy: ReorgProxy, rig: Rig, new_blocks: int
) -> None:
    """The state an unlinked checkpoint move left (finding 4 before the fix): the checkpoint
    and the block below it on the new branch, head-2 still the old one. The checkpoint's own
    hash is canonical; the next run must still find and repair head-2."""
    chain, end = history, tip(history)
    await rig.backfill.run(chain.deployment.deployment_block, end)
    stale = {row for row in canonical_rows(chain) if row[2] == end - 2}
    assert stale
    chain.rpc.call("anvil_reorg", [3, [[fresh_fill(chain.deployment, 5), 0]]])
    with sqlite3.connect(rig.database) as conn:  # what the old code recorded
        for number in (end - 1, end):
            header = chain.rpc.call("eth_getBlockByNumber", [hex(number), False])
            conn.execute(
                "UPDATE recent_blocks SET hash = ?, parent_hash = ? WHERE number = ?",
                (header["hash"], header["parentHash"], number),
            )
        conn.execute("UPDATE checkpoint SET block_hash = ?", (block_hash(chain, end),))
        conn.execute("DELETE FROM events WHERE block_number > ?", (end - 2,))
    if new_blocks:
        chain.rpc.call("anvil_mine", [hex(new_blocks)])
    await rig.backfill.run(end + 1, tip(chain))  # with nothing new to fetch, too
    await assert_on_the_chain(chain, rig)
    assert rig.backfill.reorgs == 1
    assert queue_rows(rig.database, removed=True) == stale


# ---------------------------------------------------------------- finding 5


@pytest.mark.parametrize("every_header", [True, False], ids=["recent", "deep"])
async def test_rows_of_a_losing_fork_in_a_ranged_window_are_removed_on_hash_evidence(
    history: Chain,
    rig: Rig,
    every_header: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Queued rows (one processed) of blocks a ranged window covers, with hashes the chain
    does not hold there: removed when the checkpoint moves over them, the processed one
    flagged for its compensation; every canonical row stays."""
    if not every_header:
        monkeypatch.setattr(backfill_module, "RECENT_BLOCKS_KEPT", 1)
    chain, end = history, tip(history)
    real = sorted(canonical_rows(chain), key=lambda row: row[2])
    heights = {row[2] for row in real}
    with_logs = real[len(real) // 2][2]
    without_logs = next(
        n for n in range(chain.deployment.deployment_block, end) if n not in heights
    )
    fork_hash = "0x" + "f0" * 32
    ghosts = [
        (("0x" + "a1" * 32), 0, with_logs),  # a height with logs: its hash is named
        (("0x" + "a2" * 32), 0, without_logs),  # a height with none: its header is read
    ]
    with sqlite3.connect(rig.database) as conn:
        for tx_hash, index, number in ghosts:
            conn.execute(
                "INSERT INTO events (tx_hash, log_index, block_number, block_hash, tx_index,"
                " address, topic0, data, status, enqueued_at, updated_at) VALUES"
                " (?, ?, ?, ?, 0, ?, ?, x'00', ?, 'now', 'now')",
                (
                    tx_hash,
                    index,
                    number,
                    fork_hash,
                    chain.deployment.orderbook,
                    ORDERBOOK_TOPICS[0],
                    "processed" if number == with_logs else "pending",
                ),
            )
    await rig.backfill.run(chain.deployment.deployment_block, end)
    await assert_on_the_chain(chain, rig)
    with sqlite3.connect(rig.database) as conn:
        states = dict(
            conn.execute(
                "SELECT block_number, status || '/' || compensate FROM events WHERE block_hash = ?",
                (fork_hash,),
            ).fetchall()
        )
    assert states == {with_logs: "removed/1", without_logs: "removed/0"}


async def test_late_hint_below_the_checkpoint_off_the_chain_is_recorded_not_queued(
    history: Chain, rig: Rig
) -> None:
    chain, end = history, tip(history)
    await rig.backfill.run(chain.deployment.deployment_block, end)
    real = sorted(canonical_rows(chain), key=lambda row: row[2])[-1]
    logs = chain.rpc.call("eth_getLogs", [{"blockHash": real[3]}])
    hint = parse_log(
        {**logs[-1], "blockHash": "0x" + "e7" * 32, "transactionHash": "0x" + "e8" * 32}
    )
    assert await rig.store.store_hint([hint]) == 0
    assert queue_rows(rig.database, removed=False) == canonical_rows(chain)
    with sqlite3.connect(rig.database) as conn:
        sightings = conn.execute("SELECT tx_hash, block_hash FROM event_sightings").fetchall()
    assert sightings == [("0x" + "e8" * 32, "0x" + "e7" * 32)]


# ------------------------------------------- a reorg injected by the provider (the proxy)


def fake_hash(real: str) -> str:
    return "0x" + ("dead" + real[6:])[:64]


@pytest.mark.parametrize("phase", ["by-hash", "range-recent", "range-deep"])
async def test_a_branch_the_provider_showed_then_dropped_is_undone(
    history: Chain,
    proxy: ReorgProxy,
    rig: Rig,
    phase: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The provider answers one header (and, by hash, its logs) from a branch of its own, then
    the real chain again: a reorg injected by the proxy, seen from hashes alone. The backfill
    ends on the real chain; the rows it stored from the shown branch are re-included in their
    real block (``inclusion`` 1), nothing of the real chain is lost."""
    if phase == "range-deep":
        monkeypatch.setattr(backfill_module, "RECENT_BLOCKS_KEPT", 1)
    chain, end = history, tip(history)
    start = chain.deployment.deployment_block
    if phase == "by-hash":
        shown = end - 2
    else:  # the end of a ranged window (4 blocks each, from the start) in the middle
        shown = next(n for n in range((start + end) // 2, end) if (n - start) % 4 == 3)
    real = chain.rpc.call("eth_getBlockByNumber", [hex(shown), False])
    fake = fake_hash(real["hash"])
    ours = {"address": chain.deployment.orderbook, "topics": [list(ORDERBOOK_TOPICS)]}
    real_logs = chain.rpc.call("eth_getLogs", [{**ours, "blockHash": real["hash"]}])
    assert real_logs or phase != "by-hash"
    header = lambda call: (  # noqa: E731
        call.method == "eth_getBlockByNumber" and call.params[0] == hex(shown)
    )
    proxy.answers = [
        Canned(header, result={**real, "hash": fake}),
        Canned(by_hash(fake), result=[{**log, "blockHash": fake} for log in real_logs]),
    ]
    await rig.backfill.run(start, end)
    assert proxy.calls_matching(header)[0].injected is not None
    await assert_on_the_chain(chain, rig)
    shown_rows = {(str(log["transactionHash"]), int(log["logIndex"], 16)) for log in real_logs}
    with sqlite3.connect(rig.database) as conn:
        inclusions = dict(
            ((str(t), int(i)), int(n))
            for t, i, n in conn.execute("SELECT tx_hash, log_index, inclusion FROM events")
        )
    if phase == "by-hash":  # stored from the shown branch, then re-included in the real block
        assert {inclusions[key] for key in shown_rows} == {1}
    else:  # a window's reads vouch for its logs: nothing was stored from the shown branch
        assert {inclusions[key] for key in shown_rows} <= {0}
    assert set(inclusions.values()) <= {0, 1}


async def test_a_reorg_the_writer_finds_behind_a_full_queue_is_followed(
    history: Chain, proxy: ReorgProxy, rig: Rig
) -> None:
    """The writer finds the first window unlinked (the block below it, recorded, is from a
    branch the chain left) while every window is fetched and the queue is full: the backfill
    must follow the reorg, not wait forever to hand the writer its end marker."""
    chain, end = history, tip(history)
    begin = chain.deployment.deployment_block + 10
    below = chain.rpc.call("eth_getBlockByNumber", [hex(begin - 2), False])
    left = fake_hash(block_hash(chain, begin - 1))
    with sqlite3.connect(rig.database) as conn:  # the record of a branch that left at begin-1
        conn.execute(
            "INSERT INTO recent_blocks (number, hash, parent_hash) VALUES (?, ?, ?), (?, ?, ?)",
            (begin - 2, below["hash"], below["parentHash"], begin - 1, left, below["hash"]),
        )
        conn.execute(
            "INSERT INTO checkpoint (id, block_number, block_hash, updated_at)"
            " VALUES (1, ?, ?, 'now')",
            (begin - 1, left),
        )
    gated, metrics = GatedSink(rig.store), Metrics()
    workers, ranged = 1, end - 2 - begin  # one worker: windows reach the writer in order
    windows = 2 * workers + 1  # one in the writer's hands, the queue (2 x workers) full
    batch = -(-ranged // windows)
    assert -(-ranged // batch) == windows
    backfill = Backfill(
        rig.endpoint,
        gated,
        LogFilter(chain.deployment.orderbook, ORDERBOOK_TOPICS),
        workers=workers,
        batch_blocks=batch,
        write_batch_logs=0,  # one write per window, however few its logs
        state=rig.store,
        metrics=metrics,
    )

    def all_fetched() -> bool:
        ranged_calls = [call for call in proxy.get_logs_calls() if call.block_range]
        in_flight = metrics.registry.get_sample_value("backfill_workers")
        return gated.waiting and len(ranged_calls) == windows and in_flight == 0

    task = asyncio.create_task(backfill.run(begin, end))
    try:
        await wait_until(all_fetched, timeout_s=30, what="every window fetched, the writer held")
        gated.gate.set()
        await asyncio.wait_for(task, 30)
    finally:
        task.cancel()
    assert backfill.reorgs == 1
    expected = {row for row in canonical_rows(chain) if row[2] >= begin - 1}
    assert queue_rows(rig.database, removed=False) == expected
