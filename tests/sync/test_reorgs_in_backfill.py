"""Reorgs while `bot backfill` / `bot run` back-fill (SPEC §6, §7; issue 8 findings 4 and 6).

A loopback HTTP proxy (``tests/support/reorg_proxy.py``) calls ``anvil_reorg`` at an exact request
of the bot (after it read a block by hash, before it reads a ranged window), or the test does
right after a backfill whose windows committed out of order. The oracles are the canonical
chain's token balances of our owner (positions), the fills whose blocks left the chain
(compensations: exactly one for each processed one, none for any other), and the chain's logs
(no standing fill outside it). Plans are seeded; reorg instants are fixed requests.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from bot.devnet.plan import make_plan
from bot.devnet.simulate import run_plan
from tests.support.botproc import BotProcess, status, wait_caught_up, wait_for, write_config
from tests.support.chain import Chain
from tests.support.oracles import (
    balances,
    chain_net,
    compensations,
    head,
    our_fill_trades_in,
    positions,
    rows,
)
from tests.support.reorg_proxy import Hook, ReorgProxy, by_hash, fresh_fill, ranged_reaching


def send(chain: Chain, request: dict[str, Any]) -> None:
    tx_hash = chain.rpc.call("eth_sendTransaction", [request])
    wait_for(
        lambda: chain.rpc.call("eth_getTransactionReceipt", [tx_hash]),
        timeout_s=30,
        what=f"the receipt of {tx_hash}",
    )


async def bot_backfill(config: Path) -> str:
    """``bot backfill`` to the end; its output (it must exit 0)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "--config",
        str(config),
        "backfill",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 90)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text[-4000:]
    return text


def canonical_keys(chain: Chain) -> set[tuple[str, int, str]]:
    logs = chain.rpc.call(
        "eth_getLogs",
        [{"address": chain.deployment.orderbook, "fromBlock": "0x0", "toBlock": "latest"}],
    )
    return {
        (str(log["transactionHash"]).lower(), int(log["logIndex"], 16), str(log["blockHash"]))
        for log in logs
    }


def standing_fills(database: Path) -> set[tuple[str, int, str]]:
    """(tx, log_index, block_hash) of every fill trade no compensation reverses."""
    found = rows(
        database,
        "SELECT t.tx_hash, t.log_index, t.block_hash FROM trades t WHERE t.kind = 'fill'"
        " AND NOT EXISTS (SELECT 1 FROM trades c WHERE c.reverses_trade_id = t.id)",
    )
    return {(str(t), int(i), str(h)) for t, i, h in found}


def backfill_config(chain: Chain, tmp_path: Path, url: str, **options: Any) -> tuple[Path, Path]:
    database = tmp_path / "bot.db"
    config = write_config(
        tmp_path / "bot.toml",
        chain.deployment,
        ws_url=chain.ws_url,
        http_url=url,
        database=database,
        confirmations=0,
        **options,
    )
    return config, database


async def test_reorg_while_backfill_fetches_by_hash_books_no_phantom_fill(
    chain: Chain, tmp_path: Path
) -> None:
    """`bot backfill` reads block head-2 (a fill of ours) by hash; then the last 3 blocks are
    replaced by a branch with another fill of ours at head-2. Finding 4: the old fill was
    booked and the new one never fetched."""
    baseline = balances(chain)
    run_plan(chain.rpc, chain.deployment, make_plan(seed=24, fills=8))
    send(chain, fresh_fill(chain.deployment, 7))  # head-2: ours
    chain.rpc.call("anvil_mine", ["0x2"])
    tip = head(chain)
    doomed = chain.rpc.call("eth_getBlockByNumber", [hex(tip - 2), False])["hash"]
    proxy = await ReorgProxy(chain.http_url).start()
    try:
        new_branch = [[fresh_fill(chain.deployment, 5), 0]]
        proxy.hooks.append(Hook(by_hash(doomed), proxy.reorg(3, new_branch)))
        config, database = backfill_config(chain, tmp_path, proxy.url)
        await bot_backfill(config)
    finally:
        await proxy.stop()
    assert len(proxy.reorgs) == 1
    report = status(database)
    assert report is not None and report["checkpoint_block"] == head(chain)
    assert positions(report) == chain_net(chain, baseline)
    assert standing_fills(database) <= canonical_keys(chain)  # no phantom trade
    assert compensations(database) == []  # nothing of the old branch was processed


async def test_reorg_while_backfill_fetches_ranges_compensates_exactly_the_dropped_fills(
    chain: Chain, tmp_path: Path
) -> None:
    """A first `bot backfill` processes everything; more fills follow; a second one is
    fetching ranged windows when the chain replaces every block it is fetching and the last 5
    the first one processed. Only the rows of replaced blocks are removed; the compensations
    are exactly the processed fills of those blocks (findings 4 and 6)."""
    baseline = balances(chain)
    run_plan(chain.rpc, chain.deployment, make_plan(seed=25, fills=10))
    proxy = await ReorgProxy(chain.http_url).start()
    try:
        config, database = backfill_config(chain, tmp_path, proxy.url, batch_blocks=4)
        await bot_backfill(config)
        first_tip = head(chain)
        run_plan(chain.rpc, chain.deployment, make_plan(seed=26, fills=4))
        # empty blocks after them: the second backfill's first window is ranged, not by hash
        chain.rpc.call("anvil_mine", ["0x6"])
        second_tip = head(chain)
        first_replaced = first_tip - 4
        doomed = our_fill_trades_in(database, first_replaced)
        assert doomed, "the plan must leave fills of ours in the replaced blocks"
        depth = second_tip - first_replaced + 1
        new_branch = [[fresh_fill(chain.deployment, 5), 0]]
        proxy.hooks.append(
            Hook(ranged_reaching(first_tip + 1), proxy.reorg(depth, new_branch), before=True)
        )
        await bot_backfill(config)
    finally:
        await proxy.stop()
    assert len(proxy.reorgs) == 1
    report = status(database)
    assert report is not None
    assert positions(report) == chain_net(chain, baseline)
    assert sorted(r[0] for r in compensations(database)) == sorted(t[0] for t in doomed)
    removed = rows(database, "SELECT block_number FROM events WHERE status = 'removed'")
    assert removed and min(r[0] for r in removed) >= first_replaced
    assert standing_fills(database) <= canonical_keys(chain)


def test_five_block_reorg_after_an_out_of_order_backfill_stops_at_the_fork_point(
    chain: Chain, tmp_path: Path
) -> None:
    """Finding 6: the backfill's windows committed out of order, so the old checkpoint
    recorded a hash only here and there; a 5-block reorg rolled back dozens of blocks and
    compensated fills that never left the chain. Now only the replaced blocks' rows go."""
    baseline = balances(chain)
    run_plan(chain.rpc, chain.deployment, make_plan(seed=27, fills=12))
    tip, depth = head(chain), 5
    fork_point = tip - depth
    ranged_end = tip - 3  # the blocks after it are read by hash
    start = chain.deployment.deployment_block
    # windows whose ends (the old code's only recorded hashes) miss the blocks near the fork
    batch = next(
        b for b in range(16, 40) if all((n - start + 1) % b for n in range(fork_point - 2, tip))
    )
    assert ranged_end - start > 4 * batch
    database = tmp_path / "bot.db"
    config = write_config(
        tmp_path / "bot.toml",
        chain.deployment,
        ws_url=chain.ws_url,
        http_url=chain.http_url,
        database=database,
        confirmations=0,
        workers=4,
        batch_blocks=batch,
    )
    bot = BotProcess(config).start()
    try:
        bot.wait_for_log("live: following heads")
        wait_caught_up(database, tip, bot=bot)
        doomed = our_fill_trades_in(database, fork_point + 1)
        assert doomed
        chain.rpc.call("anvil_reorg", [depth, []])
        wait_for(
            lambda: len(compensations(database)) >= len(doomed),
            timeout_s=30,
            what="compensations",
            on_timeout=bot.log_tail,
        )
        chain.rpc.call("evm_mine", [])
        report = wait_caught_up(database, head(chain), bot=bot)
    finally:
        assert bot.stop() == 0, bot.log_tail()
    assert sorted(r[0] for r in compensations(database)) == sorted(t[0] for t in doomed)
    removed = rows(database, "SELECT block_number FROM events WHERE status = 'removed'")
    assert removed and min(r[0] for r in removed) > fork_point
    assert positions(report) == chain_net(chain, baseline)
    assert any("rolled back to it" in m and f"above {fork_point} " in m for m in bot.messages())
