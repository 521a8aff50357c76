"""Reorgs and lagging providers while the backfill runs (SPEC §6, §7; issue 8 findings 4, 5, 8).

Real anvil, a real ``ChainStore`` on SQLite, the real ``Backfill``/``Follower``, and a loopback
proxy (``tests/support/reorg_proxy.py``) that calls ``anvil_reorg`` at an exact request of the
bot, or plays a provider that lags. The oracle is the chain itself after the fact: the queue's
live rows must be exactly the canonical chain's orderbook logs (by transaction, index, block
and block hash), and rows are removed only where the chain holds another block. The plans are
seeded (``PLAN_SEED``, logged); the reorg instants are fixed requests, not random.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from loguru import logger

import bot.sync.backfill as backfill_module
from bot.chain.blocks import LogFilter, get_header
from bot.chain.endpoint import Endpoint
from bot.chain.parse import parse_log
from bot.chain.transport import HttpTransport
from bot.core.abi import ORDERBOOK_TOPICS
from bot.devnet.plan import make_plan
from bot.devnet.simulate import run_plan
from bot.store.chain_state import ChainStore
from bot.store.connection import ServedChain, open_database
from bot.sync.backfill import Backfill
from bot.sync.follower import Follower
from tests.support.chain import Chain
from tests.support.history import wait_until
from tests.support.reorg_proxy import (
    Canned,
    Hook,
    ReorgProxy,
    by_hash,
    fresh_fill,
    ranged_reaching,
)

PLAN_SEED = 31
Row = tuple[str, int, int, str]


def tip(chain: Chain) -> int:
    return int(chain.rpc.call("eth_blockNumber", []), 16)


def block_hash(chain: Chain, number: int) -> str:
    return str(chain.rpc.call("eth_getBlockByNumber", [hex(number), False])["hash"]).lower()


def canonical_rows(chain: Chain) -> set[Row]:
    """Every orderbook log of the canonical chain now, read straight from anvil."""
    logs = chain.rpc.call(
        "eth_getLogs",
        [{"address": chain.deployment.orderbook, "fromBlock": "0x0", "toBlock": "latest"}],
    )
    return {
        (
            str(log["transactionHash"]).lower(),
            int(log["logIndex"], 16),
            int(log["blockNumber"], 16),
            str(log["blockHash"]).lower(),
        )
        for log in logs
    }


def queue_rows(database: Path, *, removed: bool) -> set[Row]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        found = conn.execute(
            "SELECT tx_hash, log_index, block_number, block_hash FROM events WHERE"
            + (" status = 'removed'" if removed else " status != 'removed'")
        ).fetchall()
    return {(str(t), int(i), int(n), str(h)) for t, i, n, h in found}


@dataclass
class Rig:
    """The bot's side: a store, an endpoint through the proxy, a backfill and a follower."""

    database: Path
    store: ChainStore
    endpoint: Endpoint
    backfill: Backfill
    follower: Follower


@pytest.fixture(autouse=True)
def short_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """A waiting window retries within half a second here (30 s in production)."""
    monkeypatch.setattr(backfill_module, "RETRY_MAX_S", 0.5)


@pytest.fixture
def history(chain: Chain) -> Iterator[Chain]:
    logger.info("plan seed {}", PLAN_SEED)
    run_plan(chain.rpc, chain.deployment, make_plan(seed=PLAN_SEED, fills=10))
    yield chain


@pytest.fixture
async def proxy(chain: Chain) -> AsyncIterator[ReorgProxy]:
    started = await ReorgProxy(chain.http_url).start()
    try:
        yield started
    finally:
        await started.stop()


@pytest.fixture
async def rig(chain: Chain, proxy: ReorgProxy, tmp_path: Path) -> AsyncIterator[Rig]:
    d = chain.deployment
    database = tmp_path / "bot.db"
    conn, _meta = await open_database(
        database, ServedChain(31337, d.orderbook, d.order_owner, d.deployment_block)
    )
    store = ChainStore(conn)
    endpoint = Endpoint(HttpTransport(proxy.url), max_backoff_s=0.05)
    log_filter = LogFilter(d.orderbook, ORDERBOOK_TOPICS)
    backfill = Backfill(endpoint, store, log_filter, workers=3, batch_blocks=4)
    try:
        yield Rig(
            database, store, endpoint, backfill, Follower(endpoint, store, log_filter, backfill)
        )
    finally:
        await endpoint.close()
        await conn.close()


async def assert_on_the_chain(chain: Chain, rig: Rig) -> None:
    assert queue_rows(rig.database, removed=False) == canonical_rows(chain)
    checkpoint = await rig.store.checkpoint()
    assert checkpoint is not None
    assert (checkpoint.number, checkpoint.hash) == (tip(chain), block_hash(chain, tip(chain)))


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


async def test_a_lagging_provider_skips_no_block_and_removes_no_row(
    history: Chain, proxy: ReorgProxy, rig: Rig
) -> None:
    """The provider has not seen the last blocks: their headers are null, their logs absent.
    Rows of them are already queued (live hints from another provider). The backfill waits:
    the checkpoint stays below them, nothing is removed; once the provider catches up, every
    log is there."""
    chain, end = history, tip(history)
    lag = end - 8
    hints = sorted(row for row in canonical_rows(chain) if row[2] > lag)
    assert hints
    logs = chain.rpc.call(
        "eth_getLogs",
        [{"address": chain.deployment.orderbook, "fromBlock": hex(lag + 1), "toBlock": hex(end)}],
    )
    assert await rig.store.store_hint([parse_log(log) for log in logs]) == len(hints)
    proxy.lag_above = lag
    task = asyncio.create_task(rig.backfill.run(chain.deployment.deployment_block, end))
    try:
        waits = lambda: proxy.calls_matching(  # noqa: E731
            lambda call: call.method == "eth_getBlockByNumber" and call.injected == "lagging"
        )
        await wait_until(
            lambda: task.done() or len(waits()) >= 5, timeout_s=30, what="the backfill waiting"
        )
        assert not task.done(), task.exception()
        checkpoint = await rig.store.checkpoint()
        assert checkpoint is None or checkpoint.number <= lag
        assert queue_rows(rig.database, removed=True) == set()
        proxy.lag_above = None
        await asyncio.wait_for(task, 60)
    finally:
        task.cancel()
    await assert_on_the_chain(chain, rig)
    assert queue_rows(rig.database, removed=True) == set()


async def test_rows_missing_from_a_lagging_log_index_wait_loudly_and_are_kept(
    history: Chain, proxy: ReorgProxy, rig: Rig
) -> None:
    """Headers are served, but the provider's logs lag: a queued row of a canonical block is
    missing from the window and from its block read by hash. A loud error, retried; the
    checkpoint never passes the block; the row is never removed."""
    chain, end = history, tip(history)
    lag = end - 8
    logs = chain.rpc.call(
        "eth_getLogs",
        [{"address": chain.deployment.orderbook, "fromBlock": hex(lag + 1), "toBlock": hex(end)}],
    )
    await rig.store.store_hint([parse_log(log) for log in logs])
    first_missing = int(logs[0]["blockNumber"], 16)
    errors: list[str] = []
    handler = logger.add(lambda m: errors.append(m.record["message"]), level="ERROR")
    proxy.logs_lag_above = lag
    task = asyncio.create_task(rig.backfill.run(chain.deployment.deployment_block, end))
    try:
        await wait_until(
            lambda: task.done() or sum("MissingLogError" in e for e in errors) >= 3,
            timeout_s=30,
            what="loud, retried errors",
        )
        assert not task.done(), "the backfill passed blocks whose queued logs it did not see"
        checkpoint = await rig.store.checkpoint()
        assert checkpoint is not None and checkpoint.number < first_missing
        assert queue_rows(rig.database, removed=True) == set()
        proxy.logs_lag_above = None
        await asyncio.wait_for(task, 60)
    finally:
        task.cancel()
        logger.remove(handler)
    await assert_on_the_chain(chain, rig)
    assert queue_rows(rig.database, removed=True) == set()


# ---------------------------------------------------------------- finding 8


async def test_unknown_block_for_a_replaced_head_follows_the_new_branch(
    history: Chain, proxy: ReorgProxy, rig: Rig
) -> None:
    chain, end = history, tip(history)
    await rig.backfill.run(chain.deployment.deployment_block, end)
    run_plan(chain.rpc, chain.deployment, make_plan(seed=PLAN_SEED + 1, fills=1)[:1])
    stale = await get_header(rig.endpoint, end + 1)
    chain.rpc.call("anvil_reorg", [1, [[fresh_fill(chain.deployment, 5), 0]]])
    unknown = {"code": -32000, "message": "unknown block"}
    proxy.answers = [Canned(by_hash(stale.hash), error=unknown) for _ in range(50)]
    await asyncio.wait_for(rig.follower.on_head(stale), 30)
    await assert_on_the_chain(chain, rig)


async def test_unknown_block_for_a_canonical_head_means_wait(
    history: Chain, proxy: ReorgProxy, rig: Rig
) -> None:
    chain, end = history, tip(history)
    await rig.backfill.run(chain.deployment.deployment_block, end - 1)
    head = await get_header(rig.endpoint, end)
    unknown = {"code": -32000, "message": "unknown block"}
    proxy.answers = [Canned(by_hash(head.hash), error=unknown) for _ in range(3)]
    await asyncio.wait_for(rig.follower.on_head(head), 30)
    assert len(proxy.calls_matching(by_hash(head.hash))) == 4
    await assert_on_the_chain(chain, rig)


async def test_null_and_malformed_log_answers_are_retried(
    history: Chain, proxy: ReorgProxy, rig: Rig
) -> None:
    chain, end = history, tip(history)
    await rig.backfill.run(chain.deployment.deployment_block, end - 1)
    head = await get_header(rig.endpoint, end)
    proxy.answers = [
        Canned(by_hash(head.hash), result=None),
        Canned(by_hash(head.hash), result=[{"blockNumber": "oops"}]),
    ]
    await asyncio.wait_for(rig.follower.on_head(head), 30)
    assert len(proxy.calls_matching(by_hash(head.hash))) == 3
    await assert_on_the_chain(chain, rig)


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
