"""Lagging providers and bad answers (SPEC §6, §7; issue 8 findings 5 and 8).

A provider that has not seen the last blocks (null headers, absent logs), one whose log index
lags its headers, ``unknown block`` for a hash, ``null`` and malformed log answers: the backfill
and the follower wait, retry and follow, never skip a block, never remove a row for an answer
that merely lacks it, and never end with a traceback. Real anvil behind a loopback proxy
(``tests/support/reorg_proxy.py``), a real ``ChainStore``; the plan is seeded (``PLAN_SEED``).
"""

from __future__ import annotations

import asyncio

import pytest
from loguru import logger

from bot.chain.blocks import get_header
from bot.chain.parse import parse_log
from bot.devnet.plan import make_plan
from bot.devnet.simulate import run_plan
from tests.support.chain import Chain
from tests.support.history import wait_until
from tests.support.reorg_proxy import (
    Canned,
    ReorgProxy,
    by_hash,
    fresh_fill,
)
from tests.support.reorg_rig import (
    Rig,
    assert_on_the_chain,
    canonical_rows,
    queue_rows,
    tip,
)

pytestmark = pytest.mark.usefixtures("short_backoff")
PLAN_SEED = 32


@pytest.fixture
def history(chain: Chain) -> Chain:
    logger.info("plan seed {}", PLAN_SEED)
    run_plan(chain.rpc, chain.deployment, make_plan(seed=PLAN_SEED, fills=10))
    return chain


# ---------------------------------------------------------------- finding 5


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
        # it waits either on null headers, or (SPEC §7's lag rule) before asking for a window
        # at all, re-reading the provider's head that is still below the window's end
        waits = lambda: proxy.calls_matching(  # noqa: E731
            lambda call: (
                call.injected == "lagging"
                and call.method in ("eth_getBlockByNumber", "eth_blockNumber")
            )
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
