"""Issue acceptance: fills simulated by `bot devnet`, fetched with a plain eth_getLogs and
drained, give exactly the per-ticker net the devnet printed (and a ClearV2 whose AfterClear is
not in the queue is completed from the transaction receipt)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from bot.broker.dry_run import DryRunBroker
from bot.chain.calls import ChainCalls
from bot.chain.endpoint import Endpoint
from bot.chain.parse import parse_log
from bot.chain.transport import HttpTransport
from bot.core.abi import ORDERBOOK_TOPICS, TOPIC_AFTER_CLEAR, TOPIC_CLEAR_V2, order_owners
from bot.core.tokens import DEFAULT_RULES
from bot.devnet.deploy import Deployment
from bot.devnet.rpc import JsonRpcClient
from bot.engine import Engine, EngineOptions
from bot.store import queries, queue
from bot.store.connection import ServedChain, connect
from tests.support.botproc import wait_for


def plain_get_logs(rpc: JsonRpcClient, deployment: Deployment) -> list[dict[str, object]]:
    answer: list[dict[str, object]] = rpc.call(
        "eth_getLogs",
        [
            {
                "address": deployment.orderbook,
                "topics": [list(ORDERBOOK_TOPICS)],
                "fromBlock": hex(deployment.deployment_block),
                "toBlock": "latest",
            }
        ],
    )
    return answer


@dataclass(frozen=True)
class DevnetUp:
    deployment: Deployment
    printed: dict[str, Decimal]
    http_url: str


@pytest.fixture
def devnet_up(tmp_path: Path) -> Iterator[DevnetUp]:
    """`bot devnet up --keep-running` as a user runs it, until the test is done."""
    state = tmp_path / "devnet"
    printed_json = tmp_path / "expected.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "devnet", "up", "--dir", str(state), "--fills", "120",
         "--seed", "4", "--expected-json", str(printed_json), "--keep-running"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(
            lambda: printed_json.exists() or process.poll() is not None,
            timeout_s=60,
            what="bot devnet up to finish its fills",
        )
        assert process.poll() is None, process.communicate()
        config = (state / "config.toml").read_text()
        yield DevnetUp(
            Deployment.load(state / "deployment.json"),
            {k: Decimal(v) for k, v in json.loads(printed_json.read_text()).items()},
            next(line.split('"')[1] for line in config.splitlines() if line.startswith("http_url")),
        )
    finally:
        process.terminate()
        process.communicate(timeout=30)
    assert process.returncode == 0


async def test_devnet_fills_drained_from_plain_get_logs_give_the_printed_net(
    devnet_up: DevnetUp, tmp_path: Path
) -> None:
    deployment, printed, http_url = devnet_up.deployment, devnet_up.printed, devnet_up.http_url
    with JsonRpcClient(http_url) as rpc:
        logs = [parse_log(item) for item in plain_get_logs(rpc, deployment)]
    # drop one of our clears' AfterClear: the drain must find it through the receipt
    # every clear of ours loses its AfterClear: the drain must complete each from its receipt
    ours = [
        log
        for log in logs
        if log.topic0 == TOPIC_CLEAR_V2 and deployment.order_owner in order_owners(log)
    ]
    assert len(ours) >= 5
    dropped = {(log.tx_hash, log.log_index + 1) for log in ours}
    queued = [
        log
        for log in logs
        if not (log.topic0 == TOPIC_AFTER_CLEAR and (log.tx_hash, log.log_index) in dropped)
    ]
    assert len(queued) == len(logs) - len(ours)
    database = tmp_path / "bot.db"
    calls = ChainCalls(Endpoint(HttpTransport(http_url)))
    engine = await Engine.open(
        database,
        ServedChain(
            31337, deployment.orderbook, deployment.order_owner, deployment.deployment_block
        ),
        broker=DryRunBroker(),
        chain=calls,
        rules=DEFAULT_RULES,
        options=EngineOptions(),
    )
    try:
        conn = await connect(database)
        try:
            await queue.enqueue(conn, queued)
        finally:
            await conn.close()
        await engine.start()
        stats = await engine.drain(up_to_block=max(log.block_number for log in logs))
    finally:
        await engine.close()
        await calls.endpoint.close()
    assert stats.failed == 0
    booked = {(t["tx_hash"], t["log_index"]) for t in queries.trades(database)}
    assert any((log.tx_hash, log.log_index) in booked for log in ours)
    report = queries.status(database)
    got = {p["ticker"]: Decimal(p["onchain_net_shares"]) for p in report["positions"]}
    assert {k: v for k, v in got.items() if v} == {k: v for k, v in printed.items() if v}
    assert report["idle"] is True
    for position in report["positions"]:
        assert abs(Decimal(position["unhedged_shares"])) < 1
