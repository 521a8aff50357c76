"""A restart after fills made while the bot was down (SPEC §6): it resumes from its checkpoint.

``chain.http_url`` points at a recording :class:`RpcProxy` in front of anvil (the subscriptions
go to anvil directly), so the test sees every ``eth_getLogs`` the restarted bot makes: none may
reach below ``checkpoint - live.confirmations``, the checkpoint's header must be re-read (its
hash re-checked) before any of them, every block the bot missed must be fetched, and the fills
of the down time are booked exactly once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.devnet.plan import PlannedTx, expected_net, make_plan, our_share_deltas
from bot.devnet.simulate import run_plan
from bot.store import queries
from tests.support.botproc import BotProcess, wait_caught_up, write_config
from tests.support.chain import Chain
from tests.support.proxies import RecordedCall, RpcProxy


@contextmanager
def rpc_proxy_in_thread(upstream: str) -> Iterator[RpcProxy]:
    """An :class:`RpcProxy` serving from an event loop of its own, so the test can block."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="rpc-proxy", daemon=True)
    thread.start()

    def run(coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, loop)
        return future.result(timeout=30)

    proxy = RpcProxy(upstream)
    try:
        run(proxy.start())
        yield proxy
    finally:
        run(proxy.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


def _head(chain: Chain) -> int:
    return int(chain.rpc.call("eth_blockNumber", []), 16)


def _fills(chain: Chain, plan: list[PlannedTx], confirmations: int) -> int:
    """Make the fills, then bury the last of them ``confirmations`` deep; returns the head."""
    run_plan(chain.rpc, chain.deployment, plan)
    if confirmations:
        chain.rpc.call("anvil_mine", [hex(confirmations)])
    return _head(chain)


def _run_until_caught_up(config: Path, database: Path, head: int) -> None:
    bot = BotProcess(config).start()
    try:
        bot.wait_for_log("live: following heads")
        wait_caught_up(database, head, bot=bot)
    finally:
        code = bot.stop()
    assert code == 0, bot.log_tail()


def _block_number_of_hash(chain: Chain, block_hash: str) -> int:
    header = chain.rpc.call("eth_getBlockByHash", [block_hash, False])
    assert header is not None, f"unknown block {block_hash}"
    return int(header["number"], 16)


def _blocks_fetched(chain: Chain, calls: list[RecordedCall]) -> list[tuple[int, int]]:
    """The block span of every eth_getLogs call: by range, or the block of its blockHash."""
    spans = []
    for call in calls:
        if call.method != "eth_getLogs":
            continue
        if call.block_range is not None:
            spans.append(call.block_range)
            continue
        block_hash = call.params[0]["blockHash"]
        number = _block_number_of_hash(chain, block_hash)
        spans.append((number, number))
    return spans


@pytest.mark.parametrize("confirmations", [0, 2])
def test_restart_resumes_from_the_checkpoint(
    chain: Chain, tmp_path: Path, confirmations: int
) -> None:
    database = tmp_path / "bot.db"
    before = make_plan(seed=61, fills=30)
    while_down = make_plan(seed=62, fills=30)
    with rpc_proxy_in_thread(chain.http_url) as proxy:
        config = write_config(
            tmp_path / "bot.toml",
            chain.deployment,
            ws_url=chain.ws_url,
            http_url=proxy.url,
            database=database,
            confirmations=confirmations,
            first_event_timeout_s=0.5,
        )
        head = _fills(chain, before, confirmations)
        _run_until_caught_up(config, database, head)
        checkpoint = queries.status(database)["checkpoint_block"]
        assert checkpoint == head
        first_run_calls = len(proxy.calls)
        assert proxy.get_logs_calls(), "the first run's backfill went through the proxy"

        head = _fills(chain, while_down, confirmations)
        assert head > checkpoint + 10
        _run_until_caught_up(config, database, head)
        calls = list(proxy.calls[first_run_calls:])

    get_logs = [i for i, c in enumerate(calls) if c.method == "eth_getLogs"]
    recheck = [
        i
        for i, c in enumerate(calls)
        if c.method == "eth_getBlockByNumber" and c.params[0] == hex(checkpoint)
    ]
    assert get_logs, "the restart fetched nothing"
    assert recheck, f"the checkpoint block {checkpoint}'s header was never re-read"
    assert recheck[0] < get_logs[0], "the checkpoint's hash is re-checked before the backfill"

    spans = _blocks_fetched(chain, calls)
    lowest = min(start for start, _end in spans)
    assert lowest > checkpoint - confirmations, (
        f"eth_getLogs from block {lowest}, at or below checkpoint {checkpoint} - {confirmations}"
    )
    fetched = {n for start, end in spans for n in range(start, end + 1)}
    missing = set(range(checkpoint + 1, head + 1)) - fetched
    assert not missing, f"blocks missed while down were never fetched: {sorted(missing)}"

    plan = [*before, *while_down]
    report = queries.status(database)
    got = {p["ticker"]: Decimal(p["onchain_net_shares"]) for p in report["positions"]}
    assert got == expected_net(plan)
    trades = queries.trades(database)
    assert len(trades) == sum(len(our_share_deltas(tx)) for tx in plan)
    assert len({(t["tx_hash"], t["log_index"], t["side"]) for t in trades}) == len(trades)
    assert report["idle"] is True
    assert report["queue"]["pending"] == 0
