"""``bot run`` phases on a real anvil (SPEC §1, §7): each window in which a fill can land.

Fills are made before the start, between "subscriptions confirmed" and "cutoff at block" (the
first of them *is* the cutoff block, which the backfill must include), while the backfill runs
(it is slowed by ``rpc.requests_per_second`` and small windows over many empty blocks, and the
log order proves the fills landed inside it), and after "live". Every fill is booked exactly once.

Also the chain id rule: off a devnet, ``live.confirmations`` must be set (exit 3 otherwise).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from bot.devnet.plan import PlannedTx, expected_net, make_plan, our_share_deltas
from bot.devnet.simulate import run_plan
from bot.store import queries
from tests.support.botproc import BotProcess, wait_caught_up, wait_for, write_config
from tests.support.chain import Chain

CUTOFF = re.compile(r"^cutoff at block (\d+)$")
BACKFILL_DONE = re.compile(r"^backfill done: blocks (\d+)-(\d+), ")
PROGRESS = re.compile(r"^blocks \d+-\d+ of (\d+)-(\d+), ")
EMPTY_BLOCKS = 300  # history to backfill; with windows of 10 blocks at 20 requests/s: ~3 s


def _head(chain: Chain) -> int:
    return int(chain.rpc.call("eth_blockNumber", []), 16)


def _block_of(receipt: dict[str, Any]) -> int:
    return int(receipt["blockNumber"], 16)


def _ours_first(plan: list[PlannedTx]) -> list[PlannedTx]:
    """The plan with a transaction holding one of our fills moved to the front."""
    index = next(i for i, tx in enumerate(plan) if our_share_deltas(tx))
    return [plan[index], *plan[:index], *plan[index + 1 :]]


def _index(messages: list[str], prefix: str) -> int:
    return next(i for i, m in enumerate(messages) if m.startswith(prefix))


def _cli_json(config: Path, command: str) -> Any:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config), command, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_fills_in_every_phase_are_booked_exactly_once(chain: Chain, tmp_path: Path) -> None:
    database = tmp_path / "bot.db"
    config = write_config(
        tmp_path / "bot.toml",
        chain.deployment,
        ws_url=chain.ws_url,
        database=database,
        batch_blocks=10,
        workers=2,
        first_event_timeout_s=60,  # the cutoff waits for our first fill, not for a timer
        extra="[rpc]\nrequests_per_second = 20\n",
    )
    before = make_plan(seed=31, fills=40)
    run_plan(chain.rpc, chain.deployment, before)
    chain.rpc.call("anvil_mine", [hex(EMPTY_BLOCKS)])
    at_cutoff = _ours_first(make_plan(seed=32, fills=8))
    during_backfill = make_plan(seed=33, fills=12)
    live = make_plan(seed=34, fills=16)

    bot = BotProcess(config).start()
    try:
        bot.wait_for_log("subscriptions confirmed on ")
        assert not any(m.startswith("cutoff at block") for m in bot.messages())
        cutoff_receipts = run_plan(chain.rpc, chain.deployment, at_cutoff)
        cutoff_line = bot.wait_for_log("cutoff at block ")
        cutoff_match = CUTOFF.match(cutoff_line)
        assert cutoff_match is not None, cutoff_line
        cutoff = int(cutoff_match[1])
        assert cutoff == _block_of(cutoff_receipts[0]), "the first fill's block is the cutoff"

        # the backfill is under way: its first window is logged, it is not done
        bot.wait_for_log(f" of {chain.deployment.deployment_block}-")
        backfill_receipts = run_plan(chain.rpc, chain.deployment, during_backfill)
        assert not any(m.startswith("backfill done") for m in bot.messages()), (
            "the backfill ended before the fills meant for it were mined: slow it down"
        )
        assert min(_block_of(r) for r in backfill_receipts) > cutoff

        bot.wait_for_log("live: following heads")
        run_plan(chain.rpc, chain.deployment, live)
        head = _head(chain)
        wait_caught_up(database, head, bot=bot)
        status = _cli_json(config, "status")
        trades = _cli_json(config, "trades")
    finally:
        code = bot.stop()
    assert code == 0, bot.log_tail()

    messages = bot.messages()
    order = [
        _index(messages, "subscriptions confirmed on "),
        _index(messages, "cutoff at block "),
        _index(messages, "blocks "),
        _index(messages, "backfill done: "),
        _index(messages, "hand-off drained up to block "),
        _index(messages, "live: following heads"),
    ]
    assert order == sorted(order), "\n".join(messages)
    done = BACKFILL_DONE.match(messages[order[3]])
    assert done is not None
    assert (int(done[1]), int(done[2])) == (chain.deployment.deployment_block, cutoff)
    window = PROGRESS.match(messages[order[2]])
    assert window is not None, messages[order[2]]
    assert (int(window[1]), int(window[2])) == (chain.deployment.deployment_block, cutoff)
    # the checkpoint after the backfill is the cutoff itself: its block was fetched, not left out
    assert messages[order[4]] == f"hand-off drained up to block {cutoff}"

    plan = [*before, *at_cutoff, *during_backfill, *live]
    positions = {p["ticker"]: Decimal(p["onchain_net_shares"]) for p in status["positions"]}
    assert positions == expected_net(plan)
    assert len(trades) == sum(len(our_share_deltas(tx)) for tx in plan)
    assert len({(t["tx_hash"], t["log_index"], t["side"]) for t in trades}) == len(trades)
    cutoff_fills = [t for t in trades if t["block_number"] == cutoff]
    assert len(cutoff_fills) == len(our_share_deltas(at_cutoff[0])), "cutoff block lost"
    assert status["idle"] is True
    assert status["checkpoint_block"] == head
    for row in status["positions"]:
        assert not row["parked"]
        assert abs(Decimal(row["unhedged_shares"])) < 1, row


def _config_off_devnet(chain: Chain, tmp_path: Path, confirmations: int | None) -> Path:
    chain.rpc.call("anvil_setChainId", [5])
    assert int(chain.rpc.call("eth_chainId", []), 16) == 5
    return write_config(
        tmp_path / "bot.toml",
        chain.deployment,
        ws_url=chain.ws_url,
        database=tmp_path / "bot.db",
        confirmations=confirmations,
        first_event_timeout_s=0.5,
    )


def test_off_devnet_without_confirmations_exits_3(chain: Chain, tmp_path: Path) -> None:
    config = _config_off_devnet(chain, tmp_path, confirmations=None)
    for command in ("run", "backfill"):
        result = subprocess.run(
            [sys.executable, "-m", "bot", "--config", str(config), command],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 3, result.stdout + result.stderr
        assert "config error: chain id 5 is not a devnet (31337)" in result.stderr
        assert "live.confirmations" in result.stderr
        assert "Traceback" not in result.stderr
    # nothing was processed for the wrong chain
    assert not (tmp_path / "bot.db").exists() or queries.trades(tmp_path / "bot.db") == []


def test_off_devnet_runs_once_confirmations_are_set(chain: Chain, tmp_path: Path) -> None:
    plan = make_plan(seed=35, fills=12)
    run_plan(chain.rpc, chain.deployment, plan)
    chain.rpc.call("anvil_mine", ["0x2"])  # the last fills are 2 blocks deep
    config = _config_off_devnet(chain, tmp_path, confirmations=None)
    database = tmp_path / "bot.db"
    bot = BotProcess(config, env={"BOT__LIVE__CONFIRMATIONS": "2"}).start()
    try:
        bot.wait_for_log("live: following heads")
        assert any("chain 5, " in m and "confirmations 2" in m for m in bot.messages())
        wait_caught_up(database, _head(chain), bot=bot)
        report = wait_for(
            lambda: queries.status(database, confirmations=2),
            timeout_s=5,
            what="status",
        )
    finally:
        code = bot.stop()
    assert code == 0, bot.log_tail()
    got = {p["ticker"]: Decimal(p["onchain_net_shares"]) for p in report["positions"]}
    assert got == expected_net(plan)
