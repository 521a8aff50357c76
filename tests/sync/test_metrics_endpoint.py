"""`bot run` serves Prometheus metrics with the SPEC §9 names, and /health."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

from bot.devnet.plan import make_plan
from bot.devnet.simulate import run_plan
from tests.support.botproc import BotProcess, wait_caught_up, wait_for, write_config
from tests.support.chain import Chain

NAMES = (
    "backfill_duration_seconds",
    "blocks_backfilled_total",
    "backfill_workers",
    "events_enqueued_total",
    "events_processed_total",
    "queue_depth",
    "rpc_requests_total",
    "subscription_reconnects_total",
    "head_lag_blocks",
    "executions_total",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except OSError:
        return 0, ""


def test_metrics_and_health(chain: Chain, tmp_path: Path) -> None:
    database = tmp_path / "bot.db"
    config = write_config(
        tmp_path / "bot.toml", chain.deployment, ws_url=chain.ws_url, database=database
    )
    run_plan(chain.rpc, chain.deployment, make_plan(seed=61, fills=30))
    port = free_port()
    bot = BotProcess(config, env={"BOT__METRICS__PORT": str(port)}).start()
    try:
        bot.wait_for_log("live: following heads")
        head = int(chain.rpc.call("eth_blockNumber", []), 16)
        wait_caught_up(database, head, bot=bot)
        status, text = wait_for(
            lambda: (r := get(f"http://127.0.0.1:{port}/metrics"))[0] == 200 and r,
            timeout_s=10,
            what="/metrics",
            on_timeout=bot.log_tail,
        )
        health_status, health = get(f"http://127.0.0.1:{port}/health")
    finally:
        assert bot.stop() == 0, bot.log_tail()
    assert status == 200
    for name in NAMES:
        assert f"\n{name}" in text or text.startswith(name), name
    samples = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert samples['events_enqueued_total{source="backfill"}'] > 0
    assert samples["events_processed_total"] > 0
    assert samples['executions_total{status="FILLED"}'] >= 1
    assert samples["queue_depth"] == 0
    assert any(k.startswith('rpc_requests_total{method="eth_getLogs"') for k in samples)
    assert health_status == 200 and json.loads(health)["ok"] is True
