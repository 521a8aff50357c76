"""Reorgs made with anvil_reorg against a running `bot run` or `bot backfill` (SPEC §6, §7).

anvil 1.7.1 sends no `removed: true` logs, so the bot must notice from block hashes alone; the
`removed: true` path is exercised by injecting such logs through a WebSocket proxy. A reorg while
the backfill runs is made at an exact request of the bot by an HTTP proxy
(``tests/support/reorg_proxy.py``). The oracle is independent of the event decoder: our owner's
token balances on the canonical chain. Plans are seeded; reorg instants are fixed requests.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from bot.core.amounts import from_base_units
from bot.devnet.deploy import balance_of
from bot.devnet.plan import make_plan, ticker_of
from bot.devnet.simulate import run_plan
from tests.support.botproc import BotProcess, status, wait_caught_up, wait_for, write_config
from tests.support.chain import Chain
from tests.support.proxies import WsProxy
from tests.support.reorg_proxy import Hook, ReorgProxy, by_hash, fresh_fill, ranged_reaching


def balances(chain: Chain) -> dict[str, int]:
    """Our owner's equity balances now (the baseline before the fills)."""
    d = chain.deployment
    return {
        symbol: balance_of(chain.rpc, token.address, d.order_owner)
        for symbol, token in d.tokens.items()
        if ticker_of(symbol) is not None
    }


def chain_net(chain: Chain, baseline: dict[str, int]) -> dict[str, Decimal]:
    """Our per-ticker net from balanceOf on the canonical chain (no event decoding)."""
    net: dict[str, Decimal] = {}
    for symbol, now in balances(chain).items():
        ticker = ticker_of(symbol)
        assert ticker is not None
        then = baseline[symbol]
        change = from_base_units(abs(now - then), chain.deployment.tokens[symbol].decimals)
        if change:
            net[ticker] = change if now > then else -change
    return net


def positions(report: dict[str, Any]) -> dict[str, Decimal]:
    return {
        p["ticker"]: Decimal(p["onchain_net_shares"])
        for p in report["positions"]
        if Decimal(p["onchain_net_shares"]) != 0
    }


def rows(database: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        return list(conn.execute(sql, params))


def head(chain: Chain) -> int:
    return int(chain.rpc.call("eth_blockNumber", []), 16)


def our_fill_trades_in(database: Path, first_block: int) -> list[tuple[Any, ...]]:
    return rows(
        database,
        "SELECT id, tx_hash, log_index, side, inclusion FROM trades WHERE kind = 'fill'"
        " AND block_number >= ? ORDER BY id",
        first_block,
    )


def compensations(database: Path) -> list[tuple[Any, ...]]:
    return rows(
        database,
        "SELECT reverses_trade_id, direction, shares FROM trades WHERE kind = 'compensation'"
        " ORDER BY id",
    )


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


# ------------------------------------------------- reorgs while the backfill runs (issue 8)


def send(chain: Chain, request: dict[str, Any]) -> None:
    chain.rpc.wait_receipt(chain.rpc.call("eth_sendTransaction", [request]))


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
