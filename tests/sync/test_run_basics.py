"""`bot run` end to end on a real anvil: fills before the start and while live, exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from bot.devnet.plan import expected_net, make_plan, our_share_deltas
from bot.devnet.simulate import run_plan
from bot.store import queries
from tests.support.botproc import BotProcess, wait_caught_up, write_config
from tests.support.chain import Chain


def positions(report: dict[str, object]) -> dict[str, Decimal]:
    rows = report["positions"]
    assert isinstance(rows, list)
    return {row["ticker"]: Decimal(row["onchain_net_shares"]) for row in rows}


def test_fills_before_start_and_while_live_are_booked_once(chain: Chain, tmp_path: Path) -> None:
    database = tmp_path / "bot.db"
    config = write_config(
        tmp_path / "bot.toml", chain.deployment, ws_url=chain.ws_url, database=database
    )
    before = make_plan(seed=11, fills=60)
    run_plan(chain.rpc, chain.deployment, before)
    bot = BotProcess(config).start()
    try:
        bot.wait_for_log("live: following heads")
        head = int(chain.rpc.call("eth_blockNumber", []), 16)
        wait_caught_up(database, head, bot=bot)
        during = make_plan(seed=12, fills=40)
        run_plan(chain.rpc, chain.deployment, during)
        head = int(chain.rpc.call("eth_blockNumber", []), 16)
        report = wait_caught_up(database, head, bot=bot)
    finally:
        code = bot.stop()
    assert code == 0, bot.log_tail()
    expected = {k: v for k, v in expected_net([*before, *during]).items() if v != 0}
    got = {k: v for k, v in positions(report).items() if v != 0}
    assert got == expected
    assert report["idle"] is True
    for row in report["positions"]:
        assert abs(Decimal(row["unhedged_shares"])) < 1


def test_backfill_processes_everything_up_to_its_target_with_confirmations(
    chain: Chain, tmp_path: Path
) -> None:
    """Finding 9: ``bot backfill`` drained only to head - 2 x confirmations. SPEC §6: its
    checkpoint target is head - confirmations, and it processes everything up to it."""
    confirmations = 2
    database = tmp_path / "bot.db"
    config = write_config(
        tmp_path / "bot.toml",
        chain.deployment,
        ws_url=chain.ws_url,
        database=database,
        confirmations=confirmations,
    )
    plan = make_plan(seed=21, fills=30)
    receipts = run_plan(chain.rpc, chain.deployment, plan)
    last_fill_block = max(int(r["blockNumber"], 16) for r in receipts)
    for _ in range(confirmations):
        chain.rpc.call("evm_mine", [])
    head = int(chain.rpc.call("eth_blockNumber", []), 16)
    assert head == last_fill_block + confirmations
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config), "backfill"],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["to"] == head - confirmations == last_fill_block
    assert summary["processed_up_to"] == last_fill_block
    report = queries.status(database, confirmations=confirmations)
    expected = {k: v for k, v in expected_net(plan).items() if v != 0}
    assert {k: v for k, v in positions(report).items() if v != 0} == expected
    assert report["queue"]["pending"] == 0
    assert len(queries.trades(database)) == sum(len(our_share_deltas(tx)) for tx in plan)
