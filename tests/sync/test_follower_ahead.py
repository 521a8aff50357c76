"""Reading a head's logs ahead (``LogsAhead``): the by-hash read started when a hint or the
head arrives is the one the follower uses for that hash, once; an early answer gets the same
checks as a late one (a short answer is re-read, a hash reorged away is never used).

Real anvil behind the loopback proxy (``tests/support/reorg_proxy.py``), a real ``ChainStore``;
the history plan is seeded (``PLAN_SEED``).
"""

from __future__ import annotations

import asyncio

import pytest
from loguru import logger

from bot.chain.blocks import LogFilter, get_header
from bot.chain.parse import parse_log
from bot.core.abi import ORDERBOOK_TOPICS
from bot.core.heads import Head
from bot.devnet.plan import make_plan
from bot.devnet.simulate import run_plan
from bot.sync.follower import LogsAhead
from tests.support.chain import Chain
from tests.support.history import wait_until
from tests.support.reorg_proxy import Canned, ReorgProxy, by_hash, fresh_fill
from tests.support.reorg_rig import Rig, assert_on_the_chain, canonical_rows, queue_rows, tip

pytestmark = pytest.mark.usefixtures("short_backoff")
PLAN_SEED = 41


@pytest.fixture
def history(chain: Chain) -> Chain:
    logger.info("plan seed {}", PLAN_SEED)
    run_plan(chain.rpc, chain.deployment, make_plan(seed=PLAN_SEED, fills=6))
    # the tip holds a fill of ours: its head needs its logs read
    chain.rpc.call("eth_sendTransaction", [fresh_fill(chain.deployment, PLAN_SEED + 1)])
    return chain


def ahead_of(chain: Chain, rig: Rig) -> LogsAhead:
    ahead = LogsAhead(rig.endpoint, LogFilter(chain.deployment.orderbook, ORDERBOOK_TOPICS))
    rig.follower.ahead = ahead
    return ahead


async def read_sent(proxy: ReorgProxy, head: Head, count: int = 1) -> None:
    await wait_until(
        lambda: len(proxy.calls_matching(by_hash(head.hash))) >= count,
        timeout_s=10,
        what=f"{count} by-hash read(s) of block {head.number}",
    )


async def test_an_early_read_is_the_heads_only_read(
    history: Chain, proxy: ReorgProxy, rig: Rig
) -> None:
    chain, end = history, tip(history)
    assert any(row[2] == end for row in canonical_rows(chain))
    await rig.backfill.run(chain.deployment.deployment_block, end - 1)
    ahead = ahead_of(chain, rig)
    head = await get_header(rig.endpoint, end)
    ahead.note(head)
    ahead.note(head)  # one read per hash, however often it is noted
    await read_sent(proxy, head)
    await asyncio.wait_for(rig.follower.on_head(head), 30)
    assert len(proxy.calls_matching(by_hash(head.hash))) == 1
    assert len(ahead) == 0  # taken
    await assert_on_the_chain(chain, rig)


async def test_a_hint_starts_the_read_of_its_block(
    history: Chain, proxy: ReorgProxy, rig: Rig
) -> None:
    chain, end = history, tip(history)
    await rig.backfill.run(chain.deployment.deployment_block, end - 1)
    ahead = ahead_of(chain, rig)
    hints = chain.rpc.call(
        "eth_getLogs", [{"address": chain.deployment.orderbook, "fromBlock": hex(end)}]
    )
    logs = [parse_log(log) for log in hints]
    for log in logs:
        ahead.note(log)
    head = await get_header(rig.endpoint, end)
    assert logs and {log.block_hash for log in logs} == {head.hash}
    await read_sent(proxy, head)
    await asyncio.wait_for(rig.follower.on_head(head), 30)
    assert len(proxy.calls_matching(by_hash(head.hash))) == 1
    await assert_on_the_chain(chain, rig)


async def test_a_short_early_answer_is_read_again_and_no_row_is_lost(
    history: Chain, proxy: ReorgProxy, rig: Rig
) -> None:
    """The early read meets a lagging provider (``[]``) while the block's hints are queued:
    the follower re-reads the block by hash, as it would after its own read."""
    chain, end = history, tip(history)
    await rig.backfill.run(chain.deployment.deployment_block, end - 1)
    hints = chain.rpc.call(
        "eth_getLogs", [{"address": chain.deployment.orderbook, "fromBlock": hex(end)}]
    )
    await rig.store.store_hint([parse_log(log) for log in hints])
    ahead = ahead_of(chain, rig)
    head = await get_header(rig.endpoint, end)
    proxy.answers = [Canned(by_hash(head.hash), result=[])]
    ahead.note(head)
    await read_sent(proxy, head)
    await asyncio.wait_for(rig.follower.on_head(head), 30)
    assert len(proxy.calls_matching(by_hash(head.hash))) == 2
    await assert_on_the_chain(chain, rig)
    assert queue_rows(rig.database, removed=True) == set()


async def test_a_read_of_a_block_reorged_away_is_never_used(
    history: Chain, proxy: ReorgProxy, rig: Rig
) -> None:
    chain, end = history, tip(history)
    await rig.backfill.run(chain.deployment.deployment_block, end - 1)
    ahead = ahead_of(chain, rig)
    stale = await get_header(rig.endpoint, end)
    ahead.note(stale)
    await read_sent(proxy, stale)
    chain.rpc.call("anvil_reorg", [1, [[fresh_fill(chain.deployment, PLAN_SEED + 2), 0]]])
    head = await get_header(rig.endpoint, end)
    assert head.hash != stale.hash
    await asyncio.wait_for(rig.follower.on_head(head), 30)
    assert len(proxy.calls_matching(by_hash(head.hash))) == 1  # its own read
    assert len(ahead) == 1  # the stale one waits, unused, until cleared or pushed out
    ahead.clear()
    assert len(ahead) == 0
    await assert_on_the_chain(chain, rig)
    assert all(row[3] != stale.hash for row in queue_rows(rig.database, removed=False))


async def test_reads_past_the_limit_push_the_oldest_out(chain: Chain, rig: Rig) -> None:
    """Hashes no node knows: their reads wait (an unknown hash is never ``[]``) until pushed
    out or cleared, and a cancelled read is never reported as an unretrieved error."""
    problems: list[object] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: problems.append(ctx))
    ahead = LogsAhead(rig.endpoint, LogFilter(chain.deployment.orderbook, ORDERBOOK_TOPICS), kept=2)
    hashes = ["0x" + f"{n:064x}" for n in (1, 2, 3)]
    for number, block_hash in enumerate(hashes, start=10**6):
        ahead.start(block_hash, number)
    assert len(ahead) == 2
    assert ahead.take(hashes[0]) is None  # pushed out (cancelled)
    second = ahead.take(hashes[1])
    assert second is not None and not second.done()
    ahead.clear()
    assert len(ahead) == 0
    second.cancel()
    await asyncio.gather(second, return_exceptions=True)
    assert second.cancelled()
    assert problems == []
