"""`bot demo --duration`: the README's first command, as a user runs it."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from bot.commands.demo import shares_for_people, usdc_for_people
from bot.devnet.cli import CONTINUOUS_SEED_OFFSET
from bot.devnet.plan import add_expected, expected_net, iter_transactions, make_plan

POSITION = re.compile(
    r"^\s+(\w+)\s+on-chain (\S+) \(devnet sent (\S+)\), hedged (\S+), in flight (\S+), "
    r"unhedged (\S+)"
)
HEDGE = re.compile(r"^\s+hedge #(\d+): (?:BUY|SELL) \d+ \w+ -> \w+ \((\S+) filled at \$(\S+)\)")
STOPPED = re.compile(r"demo stopped: (\d+) fills simulated")


def _rounded(exact: str, places: str) -> str:
    """An independent rounding of an exact decimal string, half up (a zero shown unsigned)."""
    shown = Decimal(exact).quantize(Decimal(places), rounding=ROUND_HALF_UP)
    return str(abs(shown) if shown == 0 else shown)


def _decimals(text: str) -> int:
    return len(text.partition(".")[2])


def _sent_by_the_devnet(initial_fills: int, streamed_fills: int, seed: int) -> dict[str, Decimal]:
    """What the demo's devnet sent, from its plans alone: the initial fills, then the stream's
    first transactions (the stream stops between transactions) adding up to ``streamed_fills``."""
    net = expected_net(make_plan(seed, initial_fills))
    sent = 0
    for tx in iter_transactions(random.Random(seed + CONTINUOUS_SEED_OFFSET)):
        if sent == streamed_fills:
            break
        add_expected(net, tx)
        sent += len(tx.fills)
    assert sent == streamed_fills
    return net


def test_demo_hedges_live_and_its_final_view_adds_up(tmp_path: Path) -> None:
    devnet = tmp_path / "devnet"
    result = subprocess.run(
        [sys.executable, "-m", "bot", "demo", "--dir", str(devnet),
         "--duration", "8", "--every", "2", "--fills", "20", "--rate", "4"],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "demo stopped:" in out
    final = out[out.index("demo stopped:") :]
    positions = [POSITION.match(line) for line in final.splitlines()]
    rows = [m.groups() for m in positions if m]
    assert len(rows) >= 3, final
    for ticker, onchain, sent, *_ in rows:
        assert onchain == sent, f"{ticker}: booked {onchain}, devnet sent {sent}"
    assert "-> FILLED" in final  # hedges were placed with the dry-run broker
    assert "live: following heads" in result.stderr
    assert "placing" in result.stderr  # hedges are logged as they happen

    # The view rounds for people; the database (status --json) keeps every value exact.
    status = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(devnet / "config.toml"), "status", "--json"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    report: dict[str, Any] = json.loads(status.stdout)
    exact = {p["ticker"]: p for p in report["positions"]}
    stopped = STOPPED.search(final)
    assert stopped is not None
    oracle = _sent_by_the_devnet(20, int(stopped[1]), seed=1)
    for ticker, onchain, sent, hedged, in_flight, unhedged in rows:
        position = exact[ticker]
        assert Decimal(position["onchain_net_shares"]) == oracle[ticker]  # exact, to the wei
        assert onchain == _rounded(position["onchain_net_shares"], "0.0001")
        assert sent == _rounded(str(oracle[ticker]), "0.0001")
        assert hedged == _rounded(position["hedged_shares"], "0.0001")
        assert in_flight == _rounded(position["in_flight_shares"], "0.0001")
        assert unhedged == _rounded(position["unhedged_shares"], "0.0001")
        assert {_decimals(v) for v in (onchain, sent, hedged, in_flight, unhedged)} == {4}
    assert any(_decimals(p["onchain_net_shares"]) > 4 for p in report["positions"])

    executions = {str(e["id"]): e for e in report["executions"]}
    hedges = [m.groups() for m in map(HEDGE.match, final.splitlines()) if m]
    assert hedges, final
    for execution_id, filled, price in hedges:
        execution = executions[execution_id]
        assert filled == _rounded(execution["filled_shares"], "0.0001")
        assert price == _rounded(execution["avg_price"], "0.01")
    assert any(_decimals(executions[h[0]]["avg_price"]) > 2 for h in hedges)


def test_rounding_for_people() -> None:
    assert shares_for_people("12.345678901234567890") == "12.3457"
    assert shares_for_people("-1.23455") == "-1.2346"  # half up, away from zero
    assert shares_for_people("-0.00004") == "0.0000"  # never "-0.0000"
    assert shares_for_people(Decimal(3)) == "3.0000"
    assert usdc_for_people("190.235") == "$190.24"
    assert usdc_for_people("0.004") == "$0.00"


def test_demo_with_the_alpaca_broker_hedges_at_the_fake_server(tmp_path: Path) -> None:
    devnet = tmp_path / "devnet"
    result = subprocess.run(
        [sys.executable, "-m", "bot", "demo", "--broker", "alpaca", "--dir", str(devnet),
         "--duration", "8", "--every", "4", "--fills", "20", "--rate", "4"],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fake Alpaca API at http://127.0.0.1:" in result.stdout
    status = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(devnet / "config.toml"), "status", "--json"],
        capture_output=True, text=True, timeout=60, check=True,
        env={**os.environ, "BOT__BROKER__KIND": "dry-run"},
    )  # fmt: skip
    report: dict[str, Any] = json.loads(status.stdout)
    assert report["executions"] and {e["status"] for e in report["executions"]} == {"FILLED"}
    assert all(e["broker_order_id"] and not e["broker_order_id"].startswith("dry-")
               for e in report["executions"])  # fmt: skip
    assert report["market_open"] is True
    # reconciled against the fake's positions: no drift wherever it was measured
    drifts = [p["drift_shares"] for p in report["positions"]]
    assert set(drifts) <= {"0", None} and "0" in drifts, report["positions"]
