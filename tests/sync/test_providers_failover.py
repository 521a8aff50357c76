"""``bot run`` with several providers (SPEC §7, ``chain.fallback_urls``): a primary that dies and
comes back, with a fallback: no gap, no duplicate, traffic moves and returns; subscriptions move
to the next WebSocket provider; providers of another chain are refused (exit 3).

Real anvil behind loopback proxies the test controls; fills go straight to anvil.
"""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.devnet.plan import make_plan
from bot.devnet.simulate import run_plan
from bot.store import runtime
from tests.support.botproc import BotProcess, wait_caught_up, wait_for, write_config
from tests.support.chain import Chain
from tests.support.faults import Faults, FaultyHttpProxy, LoopThread
from tests.support.proxies import TcpProxy
from tests.sync.test_live_resilience import assert_booked_exactly, count, head

FAST_BREAKER = "\n[rpc]\nbreaker_failures = 3\nbreaker_reset_s = 0.5\n"
SECRET = "secret-api-key-42"


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


def _quiet() -> Faults:
    return Faults(seed=0, error_rate=0, drop_rate=0)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _provider(database: Path) -> str | None:
    try:
        return runtime.provider_fields(database)["provider"]
    except Exception:
        return None


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return str(answer.read().decode())


@pytest.mark.timeout(120)
def test_primary_dies_and_comes_back_traffic_moves_and_returns(
    chain: Chain, loop_thread: LoopThread, tmp_path: Path
) -> None:
    primary = loop_thread.serve(FaultyHttpProxy(chain.http_url, _quiet()))
    fallback = loop_thread.serve(FaultyHttpProxy(chain.http_url, _quiet()))
    fallback_url = f"{fallback.url}/{SECRET}"
    fallback_name = f"{fallback.url}/<redacted>"
    database = tmp_path / "bot.db"
    port = _free_port()
    config = write_config(
        tmp_path / "bot.toml",
        chain.deployment,
        ws_url=chain.ws_url,
        http_url=primary.url,
        database=database,
        extra=FAST_BREAKER,
    )
    env = {
        "BOT__CHAIN__FALLBACK_URLS": json.dumps([fallback_url]),
        "BOT__METRICS__PORT": str(port),
    }
    plans = [make_plan(seed=61 + i, fills=n) for i, n in enumerate((20, 12, 12))]
    run_plan(chain.rpc, chain.deployment, plans[0])
    bot = BotProcess(config, env=env).start()
    try:
        bot.wait_for_log("live: following heads")
        wait_caught_up(database, head(chain), bot=bot)
        assert _provider(database) == primary.url
        assert sum(fallback.served.values()) <= 1  # at most its chain id was asked

        primary.down = True
        run_plan(chain.rpc, chain.deployment, plans[1])
        wait_for(lambda: _provider(database) == fallback_name, timeout_s=30, what="failover")
        wait_caught_up(database, head(chain), bot=bot)
        on_fallback = sum(fallback.served.values())
        assert fallback.served["eth_getLogs"] + fallback.served["eth_getBlockByNumber"] > 0

        primary.down = False
        served_before = sum(primary.served.values())
        wait_for(lambda: _provider(database) == primary.url, timeout_s=30, what="the return")
        run_plan(chain.rpc, chain.deployment, plans[2])
        report = wait_caught_up(database, head(chain), bot=bot)
        assert sum(primary.served.values()) > served_before
        metrics = _metrics(port)
    finally:
        code = bot.stop()
    assert code == 0, bot.log_tail()
    assert_booked_exactly(database, report, [p for plan in plans for p in plan])
    assert on_fallback > 1
    assert f'provider="{primary.url}"' in metrics
    assert f'provider="{fallback_name}"' in metrics
    assert SECRET not in metrics
    assert not any(SECRET in message for message in bot.messages())
    assert count(bot, "RPC calls now go to") >= 2


@pytest.mark.timeout(90)
def test_subscriptions_move_to_the_next_websocket_provider(
    chain: Chain, loop_thread: LoopThread, tmp_path: Path
) -> None:
    assert chain.anvil.port is not None
    ws_primary = loop_thread.serve(TcpProxy("127.0.0.1", chain.anvil.port))
    ws_fallback = loop_thread.serve(TcpProxy("127.0.0.1", chain.anvil.port))
    database = tmp_path / "bot.db"
    config = write_config(
        tmp_path / "bot.toml",
        chain.deployment,
        ws_url=ws_primary.ws_url,
        http_url=chain.http_url,
        database=database,
        extra=FAST_BREAKER,
    )
    env = {"BOT__CHAIN__FALLBACK_URLS": json.dumps([ws_fallback.ws_url])}
    plans = [make_plan(seed=71 + i, fills=n) for i, n in enumerate((12, 12, 8))]
    run_plan(chain.rpc, chain.deployment, plans[0])
    bot = BotProcess(config, env=env).start()
    try:
        bot.wait_for_log("live: following heads")
        wait_caught_up(database, head(chain), bot=bot)
        assert count(bot, f"subscriptions confirmed on {ws_primary.ws_url}") == 1
        assert count(bot, f"subscriptions confirmed on {ws_fallback.ws_url}") == 0

        ws_primary.refusing = True  # the primary's WebSocket stays down
        loop_thread.run(_cut(ws_primary))
        run_plan(chain.rpc, chain.deployment, plans[1])
        bot.wait_for_log(f"subscriptions confirmed on {ws_fallback.ws_url}", timeout_s=40)
        wait_caught_up(database, head(chain), bot=bot)
        run_plan(chain.rpc, chain.deployment, plans[2])  # live on the fallback's subscription
        report = wait_caught_up(database, head(chain), bot=bot)
    finally:
        code = bot.stop()
    assert code == 0, bot.log_tail()
    assert_booked_exactly(database, report, [p for plan in plans for p in plan])


def test_a_provider_of_another_chain_is_a_config_error(
    chain: Chain, loop_thread: LoopThread, tmp_path: Path
) -> None:
    other = loop_thread.serve(FaultyHttpProxy(chain.http_url, _quiet()))
    other.chain_id = "0x1"
    config = write_config(
        tmp_path / "bot.toml",
        chain.deployment,
        ws_url=chain.ws_url,
        database=tmp_path / "bot.db",
    )
    bot = BotProcess(config, env={"BOT__CHAIN__FALLBACK_URLS": json.dumps([other.url])}).start()
    assert bot.process is not None
    code = bot.process.wait(timeout=60)
    bot.stop()
    assert code == 3, bot.log_tail()
    assert "serve different chains" in bot.log_tail()


async def _cut(proxy: TcpProxy) -> None:
    proxy.cut()
