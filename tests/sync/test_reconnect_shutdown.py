"""Finding 3: a reconnect whose catch-up fails (the provider still failing when the socket comes
back) is retried, not fatal; and shutdown after a reconnect closes the *current* feed and tasks.

The runner runs in this test's event loop (so its feed and tasks can be inspected) against a
real anvil: subscriptions through a TCP proxy the test cuts, calls through an HTTP proxy the
test takes down.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.config import load
from bot.sync.runner import Runner
from tests.support.botproc import write_config
from tests.support.chain import Chain
from tests.support.faults import Faults, FaultyHttpProxy
from tests.support.history import wait_until
from tests.support.proxies import TcpProxy


@pytest.mark.timeout(90)
async def test_failed_reconnect_is_retried_and_shutdown_closes_the_current_feed(
    chain: Chain, tmp_path: Path
) -> None:
    assert chain.anvil.port is not None
    ws = await TcpProxy("127.0.0.1", chain.anvil.port).start()
    http = await FaultyHttpProxy(chain.http_url, Faults(seed=3, error_rate=0, drop_rate=0)).start()
    config = write_config(
        tmp_path / "bot.toml",
        chain.deployment,
        ws_url=ws.ws_url,
        http_url=http.url,
        database=tmp_path / "bot.db",
        extra="\n[rpc]\nbreaker_failures = 2\nbreaker_reset_s = 0.3\n",
    )
    stop = asyncio.Event()
    runner = Runner(load(config), stop)
    task = asyncio.create_task(runner.run())
    try:
        await wait_until(lambda: runner.live or task.done(), timeout_s=30, what="live")
        assert not task.done(), task.exception()
        first_feed, first_tasks = runner._feed, list(runner._tasks)
        assert first_feed is not None

        http.down = True  # the calls' provider keeps failing while the socket comes back
        ws.cut()
        reconnects = runner.metrics.subscription_reconnects_total
        await wait_until(lambda: reconnects._value.get() >= 1, timeout_s=20, what="reconnect")
        await wait_until(
            lambda: runner.session.trouble is not None or task.done(),
            timeout_s=40,
            what="the reconnect's catch-up to fail",
        )
        assert not task.done(), task.exception()  # before the fix: the process ended here
        http.down = False

        def recovered() -> bool:
            feed = runner._feed
            return (
                runner.session.trouble is None
                and feed is not None
                and feed is not first_feed
                and len(runner._tasks) == 2
            ) or task.done()

        await wait_until(recovered, timeout_s=40, what="the reconnect to complete")
        assert not task.done(), task.exception()
        current_feed, current_tasks = runner._feed, list(runner._tasks)
        assert current_feed is not None and not current_feed.closed
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await http.stop()
        await ws.stop()
    assert first_feed.closed and all(t.done() for t in first_tasks)
    assert current_feed.closed, "shutdown left the current feed open"
    assert all(t.done() for t in current_tasks), "shutdown left the current tasks running"
