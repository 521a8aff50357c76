"""Transient provider trouble never ends ``bot run`` (SPEC §7, issue 8 findings 1-3).

Real anvil behind loopback proxies the test controls; fills go straight to anvil. Faults and kill
instants are drawn from a printed seed (``BOT_TEST_SEED`` replays one).
"""

from __future__ import annotations

import json
import os
import random
import socket
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.devnet.plan import make_plan
from bot.devnet.simulate import run_plan
from bot.store import runtime
from tests.support.botproc import BotProcess, wait_caught_up, wait_for, write_config
from tests.support.chain import Chain
from tests.support.faults import Faults, FaultyHttpProxy, FaultyWsProxy, LoopThread
from tests.support.proxies import TcpProxy
from tests.sync.test_live_resilience import assert_booked_exactly, count, head

SEED = int(os.environ.get("BOT_TEST_SEED", "8008"))
FAST_BREAKER = "\n[rpc]\nbreaker_failures = 5\nbreaker_reset_s = 0.5\n"


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _health(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError:
        return 0, {}


def _trouble(database: Path) -> str | None:
    try:
        return runtime.provider_fields(database)["provider_trouble"]
    except Exception:  # not created or not migrated yet
        return None


class FirstCallsFail(Faults):
    """The first ``forced[method]`` requests of each method are always faulted (``cycle``'s
    faults in turn), then faults are random: a single error answer to eth_subscribe ended
    ``run`` before the fix (finding 1), and so did eth_chainId failing at start (finding 2)."""

    def __init__(
        self, seed: int, forced: dict[str, int], cycle: tuple[str, ...], **kwargs: Any
    ) -> None:
        super().__init__(seed, **kwargs)
        self._forced = dict(forced)
        self._cycle = cycle
        self._done: Counter[str] = Counter()

    def pick(self, method: str) -> str | None:
        if self._done[method] < self._forced.get(method, 0) and self.enabled:
            fault = self._cycle[self._done[method] % len(self._cycle)]
            self._done[method] += 1
            self.injected[(method, fault)] += 1
            return fault
        return super().pick(method)


FORCED = {"eth_subscribe": 2, "eth_chainId": 2, "eth_blockNumber": 2, "eth_getLogs": 5}
HTTP_KINDS = ("internal", "rate_limit", "429", "502", "drop")


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("calls", ["http", "ws"])
def test_error_answers_drops_and_kills_never_end_run(
    chain: Chain, loop_thread: LoopThread, tmp_path: Path, calls: str
) -> None:
    rng = random.Random(SEED)
    print(f"test seed {SEED}")
    ws_faults = FirstCallsFail(
        rng.randrange(2**32), FORCED, ("internal", "rate_limit"), error_rate=0.2, drop_rate=0.005
    )
    http_faults = FirstCallsFail(
        rng.randrange(2**32),
        FORCED,
        HTTP_KINDS,
        error_rate=0.25,
        drop_rate=0.03,
        kinds=("internal", "rate_limit", "429", "502"),
    )
    ws_proxy = loop_thread.serve(FaultyWsProxy(chain.ws_url, ws_faults))
    http_proxy = loop_thread.serve(FaultyHttpProxy(chain.http_url, http_faults))
    database = tmp_path / "bot.db"
    config = write_config(
        tmp_path / "bot.toml",
        chain.deployment,
        ws_url=ws_proxy.url,
        http_url=http_proxy.url if calls == "http" else "",
        database=database,
        batch_blocks=8,  # many eth_getLogs windows, each a chance for a fault
        extra=FAST_BREAKER,
    )
    plans = [make_plan(seed=SEED + i, fills=n) for i, n in enumerate((25, 10, 10, 10))]
    run_plan(chain.rpc, chain.deployment, plans[0])
    bot = BotProcess(config).start()
    kills = 0
    try:
        for plan in plans[1:3]:
            run_plan(chain.rpc, chain.deployment, plan)
            kill_at = time.monotonic() + rng.uniform(0.3, 4.0)
            print(f"kill {kills + 1} at +{kill_at - time.monotonic():.2f} s")
            _wait_until(kill_at, bot)
            assert bot.running(), f"bot exited on its own:\n{bot.log_tail()}"
            bot.kill()
            kills += 1
            bot = BotProcess(config).start()
        bot.wait_for_log("live: following heads", timeout_s=90)
        run_plan(chain.rpc, chain.deployment, plans[3])
        report = wait_caught_up(database, head(chain), bot=bot, timeout_s=120)
    finally:
        code = bot.stop()
    assert code == 0, bot.log_tail()
    assert kills == 2
    assert report["idle"] is True
    assert_booked_exactly(database, report, [p for plan in plans for p in plan])
    print("ws faults:", dict(ws_faults.injected), "http faults:", dict(http_faults.injected))
    assert ws_faults.injected[("eth_subscribe", "internal")] >= 1
    assert ws_faults.injected[("eth_subscribe", "rate_limit")] >= 1
    faulted = ws_faults.methods_faulted() | http_faults.methods_faulted()
    assert {"eth_subscribe", "eth_getLogs", "eth_blockNumber", "eth_chainId"} <= faulted
    if calls == "http":
        assert {kind for _method, kind in http_faults.injected} == set(HTTP_KINDS)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_node_down_while_running_and_before_start_is_waited_out(
    chain: Chain, loop_thread: LoopThread, tmp_path: Path
) -> None:
    """The node unreachable for longer than the old give-up time (~30 s: eth_chainId retried 8
    times, then exit 1), while the bot runs and again before it starts."""
    outage_s = 36.0
    assert chain.anvil.port is not None
    node = loop_thread.serve(TcpProxy("127.0.0.1", chain.anvil.port))
    database = tmp_path / "bot.db"
    port = _free_port()
    config = write_config(
        tmp_path / "bot.toml",
        chain.deployment,
        ws_url=node.ws_url,
        http_url=node.http_url,
        database=database,
        extra=FAST_BREAKER,
    )
    env = {"BOT__METRICS__PORT": str(port)}
    plans = [make_plan(seed=SEED + 10 + i, fills=n) for i, n in enumerate((15, 10, 10, 5))]

    def down() -> None:
        node.refusing = True
        loop_thread.run(_cut(node))

    run_plan(chain.rpc, chain.deployment, plans[0])
    bot = BotProcess(config, env=env).start()
    try:
        bot.wait_for_log("live: following heads", timeout_s=60)
        wait_caught_up(database, head(chain), bot=bot)
        assert _health(port)[0] == 200

        down()  # while running
        went_down = time.monotonic()
        run_plan(chain.rpc, chain.deployment, plans[1])  # filled while the bot cannot see it
        _status, body = wait_for(
            lambda: (answer := _health(port))[0] == 503 and answer,
            timeout_s=30,
            what="/health 503",
        )
        assert "provider trouble" in body["reason"], body
        wait_for(lambda: _trouble(database), timeout_s=30, what="status provider_trouble")
        wait_for(
            lambda: time.monotonic() - went_down >= outage_s or not bot.running(),
            timeout_s=outage_s + 5,
            what="the outage",
        )
        assert bot.running(), f"bot gave up during the outage:\n{bot.log_tail()}"
        node.refusing = False
        report = wait_caught_up(database, head(chain), bot=bot, timeout_s=60)
        assert _health(port)[0] == 200
        assert _trouble(database) is None
        assert report["idle"] is True
    finally:
        code = bot.stop()
    assert code == 0, bot.log_tail()

    down()  # before it starts
    run_plan(chain.rpc, chain.deployment, plans[2])
    bot = BotProcess(config, env=env).start()
    try:
        started = time.monotonic()
        wait_for(lambda: _trouble(database), timeout_s=30, what="status provider_trouble")
        _status, body = wait_for(
            lambda: (answer := _health(port))[0] == 503 and answer,
            timeout_s=30,
            what="/health 503 at start",
        )
        assert "chain id" in body["reason"], body
        wait_for(
            lambda: time.monotonic() - started >= outage_s or not bot.running(),
            timeout_s=outage_s + 5,
            what="the outage at start",
        )
        assert bot.running(), f"bot gave up at start:\n{bot.log_tail()}"
        assert count(bot, "provider trouble while reading the chain id") >= 3
        node.refusing = False
        bot.wait_for_log("live: following heads", timeout_s=60)
        run_plan(chain.rpc, chain.deployment, plans[3])
        report = wait_caught_up(database, head(chain), bot=bot, timeout_s=60)
        assert _trouble(database) is None
    finally:
        code = bot.stop()
    assert code == 0, bot.log_tail()
    assert_booked_exactly(database, report, [p for plan in plans for p in plan])


def _wait_until(instant: float, bot: BotProcess) -> None:
    """Until the (seeded) kill instant, failing at once if the bot exits before it."""
    wait_for(
        lambda: time.monotonic() >= instant or not bot.running(),
        timeout_s=10,
        what="the kill instant",
    )


async def _cut(proxy: TcpProxy) -> None:
    proxy.cut()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("when", ["at start", "while live"])
def test_sigterm_while_the_node_is_down_stops_cleanly_and_soon(
    chain: Chain, loop_thread: LoopThread, tmp_path: Path, when: str
) -> None:
    """A stop request is not held up by calls waiting out a dead provider (calls and
    subscriptions through separate proxies: while live only the calls' provider dies, so
    the live step itself is what waits)."""
    assert chain.anvil.port is not None
    node = loop_thread.serve(TcpProxy("127.0.0.1", chain.anvil.port))
    calls = loop_thread.serve(TcpProxy("127.0.0.1", chain.anvil.port))
    database = tmp_path / "bot.db"
    config = write_config(
        tmp_path / "bot.toml",
        chain.deployment,
        ws_url=node.ws_url,
        http_url=calls.http_url,
        database=database,
        extra=FAST_BREAKER,
    )
    run_plan(chain.rpc, chain.deployment, make_plan(seed=SEED + 20, fills=8))
    if when == "at start":
        node.refusing = calls.refusing = True
        bot = BotProcess(config).start()
        bot.wait_for_log("provider trouble while reading the chain id")
    else:
        bot = BotProcess(config).start()
        bot.wait_for_log("live: following heads")
        wait_caught_up(database, head(chain), bot=bot)
        calls.refusing = True
        loop_thread.run(_cut(calls))
        run_plan(chain.rpc, chain.deployment, make_plan(seed=SEED + 21, fills=4))
        bot.wait_for_log("live step failed", timeout_s=60)
    asked = time.monotonic()
    code = bot.stop(timeout_s=20)
    assert code == 0, bot.log_tail()
    assert time.monotonic() - asked < 5 + 5, "the stop waited for the dead provider"
    assert "stopped" in bot.messages()[-1]
