"""``bot run`` when its WebSocket fails (SPEC §7): cut mid-run while fills go on, or silent
without closing. A loopback TCP proxy the test controls stands between the bot and anvil; fills
go straight to anvil. Every fill must be booked exactly once: positions equal the plan's net and
there is one trade per fill of ours."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bot.devnet.plan import PlannedTx, expected_net, make_plan, our_share_deltas
from bot.devnet.simulate import run_plan
from bot.store import queries
from tests.support.botproc import BotProcess, wait_caught_up, wait_for, write_config
from tests.support.chain import Chain
from tests.support.proxies import TcpProxy

T = TypeVar("T")


class ProxyThread:
    """A TcpProxy serving from an event loop of its own thread (the bot process is driven by
    blocking calls from the test)."""

    def __init__(self, upstream_port: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.proxy = self._run(TcpProxy("127.0.0.1", upstream_port).start())

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    def cut(self) -> None:
        async def cut() -> None:
            self.proxy.cut()

        self._run(cut())

    def close(self) -> None:
        async def shutdown() -> None:
            await self.proxy.stop()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        self._run(shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
def ws_proxy(chain: Chain) -> Iterator[ProxyThread]:
    assert chain.anvil.port is not None
    proxy = ProxyThread(chain.anvil.port)
    yield proxy
    proxy.close()


def head(chain: Chain) -> int:
    return int(chain.rpc.call("eth_blockNumber", []), 16)


def our_fills(plan: list[PlannedTx]) -> int:
    return sum(len(our_share_deltas(tx)) for tx in plan)


def assert_booked_exactly(database: Path, report: dict[str, Any], plan: list[PlannedTx]) -> None:
    expected = {k: v for k, v in expected_net(plan).items() if v != 0}
    got = {
        row["ticker"]: Decimal(row["onchain_net_shares"])
        for row in report["positions"]
        if Decimal(row["onchain_net_shares"]) != 0
    }
    assert got == expected
    trades = queries.trades(database)
    assert len(trades) == our_fills(plan)
    assert {t["kind"] for t in trades} == {"fill"}
    keys = [(t["tx_hash"], t["log_index"], t["side"]) for t in trades]
    assert len(set(keys)) == len(keys)


def count(bot: BotProcess, text: str) -> int:
    return sum(1 for message in bot.messages() if text in message)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("calls", ["http-direct", "ws-through-proxy"])
def test_ws_cut_mid_run_fills_while_down_no_gap_no_duplicate(
    chain: Chain, ws_proxy: ProxyThread, tmp_path: Path, calls: str
) -> None:
    proxy = ws_proxy.proxy
    database = tmp_path / "bot.db"
    config = write_config(
        tmp_path / "bot.toml",
        chain.deployment,
        ws_url=proxy.ws_url,
        http_url=chain.http_url if calls == "http-direct" else "",
        database=database,
        extra="\n[rpc]\nbreaker_reset_s = 0.5\n",
    )
    before, live, while_down, after = (
        make_plan(seed=s, fills=n) for s, n in ((31, 20), (32, 10), (33, 15), (34, 8))
    )
    run_plan(chain.rpc, chain.deployment, before)
    bot = BotProcess(config).start()
    try:
        bot.wait_for_log("live: following heads")
        run_plan(chain.rpc, chain.deployment, live)
        wait_caught_up(database, head(chain), bot=bot)

        proxy.refusing = True
        ws_proxy.cut()
        bot.wait_for_log("subscription lost")
        run_plan(chain.rpc, chain.deployment, while_down)
        assert count(bot, "subscriptions confirmed") == 1  # the fills happened while down
        proxy.refusing = False

        bot.wait_for_log("backfilling the gap", timeout_s=40)
        wait_caught_up(database, head(chain), bot=bot)
        run_plan(chain.rpc, chain.deployment, after)  # live again on the new subscription
        report = wait_caught_up(database, head(chain), bot=bot)
    finally:
        code = bot.stop()
    assert code == 0, bot.log_tail()
    assert count(bot, "subscriptions confirmed") == 2
    assert_booked_exactly(database, report, [*before, *live, *while_down, *after])


@pytest.mark.timeout(90)
def test_silent_subscription_is_caught_by_the_watchdog(
    chain: Chain, ws_proxy: ProxyThread, tmp_path: Path
) -> None:
    proxy = ws_proxy.proxy
    database = tmp_path / "bot.db"
    config = write_config(
        tmp_path / "bot.toml",
        chain.deployment,
        ws_url=proxy.ws_url,
        http_url=chain.http_url,
        database=database,
        stale_after_s=2,
    )
    before, silent, after = (make_plan(seed=s, fills=n) for s, n in ((41, 12), (42, 12), (43, 6)))
    run_plan(chain.rpc, chain.deployment, before)
    bot = BotProcess(config).start()
    try:
        bot.wait_for_log("live: following heads")
        wait_caught_up(database, head(chain), bot=bot)
        proxy.silent = True  # the socket stays open and says nothing; the chain moves on
        silenced_at = time.monotonic()
        run_plan(chain.rpc, chain.deployment, silent)
        bot.wait_for_log("stale subscription", timeout_s=20)
        assert time.monotonic() - silenced_at >= 2  # not before stale_after_s
        proxy.silent = False  # new connections work (the dead one stays dead)
        bot.wait_for_log("backfilling the gap", timeout_s=40)
        wait_caught_up(database, head(chain), bot=bot)
        run_plan(chain.rpc, chain.deployment, after)
        report = wait_caught_up(database, head(chain), bot=bot)
    finally:
        code = bot.stop()
    assert code == 0, bot.log_tail()
    assert count(bot, "subscription lost") >= 1
    assert_booked_exactly(database, report, [*before, *silent, *after])


@pytest.mark.timeout(60)
def test_a_quiet_devnet_is_not_stale(chain: Chain, ws_proxy: ProxyThread, tmp_path: Path) -> None:
    proxy = ws_proxy.proxy
    database = tmp_path / "bot.db"
    stale_after_s = 1.0
    config = write_config(
        tmp_path / "bot.toml",
        chain.deployment,
        ws_url=proxy.ws_url,
        http_url=chain.http_url,
        database=database,
        stale_after_s=stale_after_s,
    )
    before, after = make_plan(seed=51, fills=8), make_plan(seed=52, fills=8)
    run_plan(chain.rpc, chain.deployment, before)
    bot = BotProcess(config).start()
    try:
        bot.wait_for_log("live: following heads")
        wait_caught_up(database, head(chain), bot=bot)
        connections = proxy.connections_accepted
        quiet_until = time.monotonic() + 4 * stale_after_s  # nothing is mined meanwhile

        def disturbed() -> str | None:
            for text in ("stale subscription", "subscription lost", "reconnecting"):
                if count(bot, text):
                    return text
            return None

        found: object = wait_for(
            lambda: disturbed() or time.monotonic() > quiet_until,
            timeout_s=4 * stale_after_s + 5,
            what="four quiet stale periods",
        )
        assert found is True, f"a quiet chain was treated as stale: {found!r}\n{bot.log_tail()}"
        assert proxy.connections_accepted == connections
        run_plan(chain.rpc, chain.deployment, after)  # the same subscription still delivers
        report = wait_caught_up(database, head(chain), bot=bot)
    finally:
        code = bot.stop()
    assert code == 0, bot.log_tail()
    assert count(bot, "subscriptions confirmed") == 1
    assert_booked_exactly(database, report, [*before, *after])
