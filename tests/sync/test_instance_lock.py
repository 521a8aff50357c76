"""The instance lock (SPEC §8) through real ``bot`` processes on a real anvil.

A second writer (``run`` or ``backfill``) on the same database refuses at once, naming the lock;
after the holder is SIGKILLed (no cleanup at all, the lock file stays behind) a new ``run`` starts
at once and books the fills made while nobody ran, exactly once.
"""

from __future__ import annotations

import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

from bot.devnet.plan import expected_net, make_plan, our_share_deltas
from bot.devnet.simulate import run_plan
from bot.store import queries
from tests.support.botproc import BotProcess, wait_caught_up, write_config
from tests.support.chain import Chain

REFUSAL_LIMIT_S = 10.0  # a refusal must not wait for anything (no retry loop on the lock)
RESTART_LIMIT_S = 15.0


def _head(chain: Chain) -> int:
    return int(chain.rpc.call("eth_blockNumber", []), 16)


def _positions(database: Path) -> dict[str, Decimal]:
    report = queries.status(database)
    return {row["ticker"]: Decimal(row["onchain_net_shares"]) for row in report["positions"]}


def _refused(config: Path, *command: str) -> tuple[subprocess.CompletedProcess[str], float]:
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config), *command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result, time.monotonic() - began


def test_second_writer_refuses_then_starts_after_sigkill(chain: Chain, tmp_path: Path) -> None:
    database = tmp_path / "bot.db"
    lock_file = Path(f"{database}.lock")
    config = write_config(
        tmp_path / "bot.toml",
        chain.deployment,
        ws_url=chain.ws_url,
        database=database,
        first_event_timeout_s=0.5,
    )
    before = make_plan(seed=51, fills=24)
    run_plan(chain.rpc, chain.deployment, before)

    first = BotProcess(config).start()
    survivor: BotProcess | None = None
    try:
        first.wait_for_log("live: following heads")
        wait_caught_up(database, _head(chain), bot=first)

        for command in (("run",), ("backfill",)):
            result, took = _refused(config, *command)
            output = result.stdout + result.stderr
            assert result.returncode == 1, output
            assert took < REFUSAL_LIMIT_S, f"{command} took {took:.1f} s to refuse"
            assert "InstanceLockedError" in output, output
            assert str(lock_file) in output, output
            assert f"pid {first.pid}" in output, output
            assert "Traceback" not in output, output
        assert first.running(), "the refused second process must not disturb the first"

        first.kill()  # SIGKILL: no cleanup, the kernel drops the flock
        assert lock_file.exists(), "the stale lock file stays; only the flock matters"
        while_down = make_plan(seed=52, fills=24)
        run_plan(chain.rpc, chain.deployment, while_down)

        began = time.monotonic()
        survivor = BotProcess(config).start()
        survivor.wait_for_log("live: following heads", timeout_s=RESTART_LIMIT_S)
        assert time.monotonic() - began < RESTART_LIMIT_S
        report = wait_caught_up(database, _head(chain), bot=survivor)
    finally:
        if first.running():
            first.kill()
        code = survivor.stop() if survivor is not None else None
    assert code == 0, survivor.log_tail() if survivor else ""

    plan = [*before, *while_down]
    assert _positions(database) == expected_net(plan)
    trades = queries.trades(database)
    assert len(trades) == sum(len(our_share_deltas(tx)) for tx in plan)
    keys = {(t["tx_hash"], t["log_index"], t["side"]) for t in trades}
    assert len(keys) == len(trades), "a fill was booked twice"
    assert report["idle"] is True
