"""Reorgs made with anvil_reorg against a running `bot run` (SPEC §7).

anvil 1.7.1 sends no `removed: true` logs, so the bot must notice from block hashes alone; the
`removed: true` path is exercised by injecting such logs through a WebSocket proxy. The oracle is
independent of the event decoder: our owner's token balances on the canonical chain
(``tests/support/oracles.py``). Reorgs while the backfill runs: ``test_reorgs_in_backfill.py``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

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
from tests.support.proxies import WsProxy


def start_bot(chain: Chain, tmp_path: Path, *, confirmations: int, ws_url: str | None = None):  # type: ignore[no-untyped-def]
    database = tmp_path / "bot.db"
    config = write_config(
        tmp_path / "bot.toml",
        chain.deployment,
        ws_url=ws_url or chain.ws_url,
        http_url=chain.http_url,
        database=database,
        confirmations=confirmations,
    )
    bot = BotProcess(config).start()
    bot.wait_for_log("live: following heads")
    return bot, database


def test_reorg_with_no_confirmations_compensates_each_processed_event_once(
    chain: Chain, tmp_path: Path
) -> None:
    bot, database = start_bot(chain, tmp_path, confirmations=0)
    try:
        baseline = balances(chain)
        run_plan(chain.rpc, chain.deployment, make_plan(seed=21, fills=40))
        tip = head(chain)
        wait_caught_up(database, tip, bot=bot)
        depth = 4
        doomed = our_fill_trades_in(database, tip - depth + 1)
        assert doomed, "the plan must leave some of our fills in the reorged blocks"
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
    booked = compensations(database)
    assert sorted(r[0] for r in booked) == sorted(t[0] for t in doomed)  # exactly one each
    assert positions(report) == chain_net(chain, baseline)
    removed = rows(database, "SELECT COUNT(*) FROM events WHERE status = 'removed'")[0][0]
    assert removed > 0
    assert any("reorg" in m for m in bot.messages())


def test_reincluded_event_is_revived_with_a_new_inclusion(chain: Chain, tmp_path: Path) -> None:
    bot, database = start_bot(chain, tmp_path, confirmations=0)
    try:
        baseline = balances(chain)
        receipts = run_plan(chain.rpc, chain.deployment, make_plan(seed=3, fills=6))
        tip = head(chain)
        wait_caught_up(database, tip, bot=bot)
        last = chain.rpc.call("eth_getTransactionByHash", [receipts[-1]["transactionHash"]])
        request = {
            key: last[src]
            for key, src in (("from", "from"), ("to", "to"), ("data", "input"), ("gas", "gas"),
                             ("nonce", "nonce"), ("value", "value"),
                             ("maxFeePerGas", "maxFeePerGas"),
                             ("maxPriorityFeePerGas", "maxPriorityFeePerGas"))
        }  # fmt: skip
        before = rows(
            database,
            "SELECT id, inclusion, block_hash FROM events WHERE tx_hash = ?",
            last["hash"].lower(),
        )
        assert before and all(r[1] == 0 for r in before)
        chain.rpc.call("anvil_reorg", [2, [[request, 0]]])  # same tx, one block earlier
        chain.rpc.call("evm_mine", [])
        wait_for(
            lambda: all(
                r[1] == 1 and r[3] == "processed"
                for r in rows(
                    database,
                    "SELECT id, inclusion, block_hash, status FROM events WHERE tx_hash = ?",
                    last["hash"].lower(),
                )
            ),
            timeout_s=30,
            what="the re-included events processed under inclusion 1",
            on_timeout=bot.log_tail,
        )
        report = wait_caught_up(database, head(chain), bot=bot)
    finally:
        assert bot.stop() == 0, bot.log_tail()
    assert positions(report) == chain_net(chain, baseline)
    fills = rows(
        database,
        "SELECT inclusion, kind FROM trades WHERE tx_hash = ? ORDER BY id",
        last["hash"].lower(),
    )
    kinds = [(inc, kind) for inc, kind in fills]
    # the first inclusion's trades reversed once, then booked again under inclusion 1
    assert kinds.count((0, "fill")) == kinds.count((0, "compensation")) > 0
    assert kinds.count((1, "fill")) == kinds.count((0, "fill"))


def test_confirmations_deeper_than_the_reorg_never_process_removed_events(
    chain: Chain, tmp_path: Path
) -> None:
    confirmations = 6
    bot, database = start_bot(chain, tmp_path, confirmations=confirmations)
    try:
        baseline = balances(chain)
        run_plan(chain.rpc, chain.deployment, make_plan(seed=22, fills=30))
        tip = head(chain)
        wait_for(
            lambda: (s := status(database)) is not None and s["checkpoint_block"] == tip,
            timeout_s=30,
            what="checkpoint at the tip",
            on_timeout=bot.log_tail,
        )
        chain.rpc.call("anvil_reorg", [3, []])
        chain.rpc.call("anvil_mine", [hex(confirmations + 1)])
        report = wait_caught_up(database, head(chain), bot=bot)
    finally:
        assert bot.stop() == 0, bot.log_tail()
    assert compensations(database) == []
    processed_removed = rows(
        database,
        "SELECT COUNT(*) FROM trades t JOIN events e ON e.id = t.event_id"
        " WHERE e.status = 'removed'",
    )[0][0]
    assert processed_removed == 0
    assert rows(database, "SELECT COUNT(*) FROM events WHERE status = 'removed'")[0][0] > 0
    assert positions(report) == chain_net(chain, baseline)


async def test_removed_true_logs_mark_events_removed_and_compensate_once(
    chain: Chain, tmp_path: Path
) -> None:
    proxy = await WsProxy(chain.ws_url).start()
    try:
        bot, database = await asyncio.to_thread(
            start_bot, chain, tmp_path, confirmations=0, ws_url=proxy.url
        )
        try:
            baseline = balances(chain)
            await asyncio.to_thread(
                run_plan, chain.rpc, chain.deployment, make_plan(seed=23, fills=30)
            )
            tip = head(chain)
            await asyncio.to_thread(wait_caught_up, database, tip, bot=bot)
            depth = 3
            doomed = our_fill_trades_in(database, tip - depth + 1)
            assert doomed
            logs = chain.rpc.call(
                "eth_getLogs",
                [{"address": chain.deployment.orderbook, "fromBlock": hex(tip - depth + 1),
                  "toBlock": hex(tip)}],
            )  # fmt: skip
            for log in logs:  # what a node sends for a reorg, before the new heads
                assert await proxy.inject_log({**log, "removed": True}) == 1
            await asyncio.to_thread(
                wait_for,
                lambda: len(compensations(database)) >= len(doomed),
                timeout_s=30,
                what="compensations from removed logs",
                on_timeout=bot.log_tail,
            )
            chain.rpc.call("anvil_reorg", [depth, []])  # the chain now agrees with the hint
            chain.rpc.call("evm_mine", [])
            report = await asyncio.to_thread(wait_caught_up, database, head(chain), bot=bot)
        finally:
            assert await asyncio.to_thread(bot.stop) == 0, bot.log_tail()
    finally:
        await proxy.stop()
    booked = compensations(database)
    assert sorted(r[0] for r in booked) == sorted(t[0] for t in doomed)
    assert positions(report) == chain_net(chain, baseline)
