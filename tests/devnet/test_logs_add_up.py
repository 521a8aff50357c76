"""Issue acceptance: the chain `bot devnet` leaves behind, read back through eth_getLogs and the
bot's own decoder and SPEC §3 conversion, adds up exactly to the net the devnet printed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

from bot.chain.parse import parse_log
from bot.core import amounts
from bot.core.abi import ORDERBOOK_TOPICS, AfterClearEvent, ClearEvent, decode
from bot.core.conversion import convert, find_after_clear
from bot.core.model import RawLog, TokenInfo
from bot.core.tokens import DEFAULT_RULES
from bot.devnet.deploy import Deployment
from bot.devnet.rpc import JsonRpcClient


def net_from_chain(rpc: JsonRpcClient, deployment: Deployment) -> dict[str, Decimal]:
    answer = rpc.call(
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
    logs = [parse_log(item) for item in answer]
    tokens = {
        t.address: TokenInfo(t.address, t.symbol, t.decimals) for t in deployment.tokens.values()
    }
    by_tx: dict[str, list[RawLog]] = {}
    for log in logs:
        by_tx.setdefault(log.tx_hash, []).append(log)
    net: dict[str, Decimal] = {}
    for log in logs:
        event = decode(log)
        if isinstance(event, AfterClearEvent):
            continue
        after: AfterClearEvent | None = None
        if isinstance(event, ClearEvent):
            pair = find_after_clear(log, by_tx[log.tx_hash])
            assert pair is not None, f"ClearV2 {log.tx_hash}/{log.log_index} has no AfterClear"
            decoded = decode(pair)
            assert isinstance(decoded, AfterClearEvent)
            after = decoded
        result = convert(
            log,
            event,
            owner=deployment.order_owner,
            after_clear=after,
            tokens=tokens,
            rules=DEFAULT_RULES,
            inclusion=0,
        )
        for trade in result.trades:
            net[trade.ticker] = amounts.add(
                net.get(trade.ticker, amounts.ZERO), trade.signed_shares
            )
    return net


def test_devnet_up_prints_the_net_that_its_logs_add_up_to(tmp_path: Path) -> None:
    state = tmp_path / "devnet"
    expected_json = tmp_path / "expected.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bot",
            "devnet",
            "up",
            "--dir",
            str(state),
            "--fills",
            "150",
            "--seed",
            "7",
            "--expected-json",
            str(expected_json),
            "--keep-running",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # --expected-json is written once the planned fills have their receipts
        deadline = time.monotonic() + 60
        while not expected_json.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "bot devnet up did not finish its fills in 60 s"
            time.sleep(0.05)
        deployment = Deployment.load(state / "deployment.json")
        printed = {k: Decimal(v) for k, v in json.loads(expected_json.read_text()).items()}
        config = (state / "config.toml").read_text()
        http_url = next(
            line.split('"')[1] for line in config.splitlines() if line.startswith("http_url")
        )
        with JsonRpcClient(http_url) as rpc:
            from_chain = net_from_chain(rpc, deployment)
    finally:
        process.terminate()
        process.communicate(timeout=30)
    assert process.returncode == 0
    assert set(printed) == {"AAPL", "TSLA", "NVDA", "MSFT"}
    for ticker, net in printed.items():
        assert from_chain.get(ticker, amounts.ZERO) == net, ticker
    assert any(abs(v) > Decimal("9.3") for v in printed.values())
