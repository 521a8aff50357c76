"""The anvil chain of the backfill benchmark: ``takes`` ``TakeOrderV2`` logs, ~10 % ours, built
once with back-pressure and cached as an anvil ``--dump-state`` file (``--load-state`` later).

Built with ``--no-mining`` and one ``evm_mine`` per ``takeOrders`` transaction of ``per_tx``
takes, every receipt awaited before the next send, so anvil's pool never piles up (NOTES: the
memory/stall hazard). 40,000 takes at 20 per transaction make ~2,000 blocks.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

from bench.report import log
from bot.devnet.anvil import AnvilProcess
from bot.devnet.contracts import TxSender
from bot.devnet.deploy import Deployment, deploy
from bot.devnet.plan import US, PlannedTx, TakeFill, iter_fills
from bot.devnet.rpc import JsonRpcClient
from bot.devnet.simulate import send_planned

BUILD_GAS_LIMIT = "300000000"
# iter_fills deals 2 takes of ours per 1 of others: keep ours with p so that p*2/(p*2+1) = 10 %
KEEP_OURS = 1 / 18


def take_fills(takes: int, seed: int) -> Iterator[TakeFill]:
    rng = random.Random(seed)
    made = 0
    for fill in iter_fills(random.Random(seed)):
        if made >= takes:
            return
        if not isinstance(fill, TakeFill):
            continue
        if fill.order.owner == US and rng.random() >= KEEP_OURS:
            continue
        made += 1
        yield fill


def transactions(takes: int, per_tx: int, seed: int) -> list[PlannedTx]:
    fills = list(take_fills(takes, seed))
    return [PlannedTx(tuple(fills[i : i + per_tx])) for i in range(0, len(fills), per_tx)]


def state_files(cache: Path, takes: int, per_tx: int) -> tuple[Path, Path]:
    tag = f"takes-{takes}-{per_tx}"
    return cache / f"anvil-{tag}.json", cache / f"deployment-{tag}.json"


def build(cache: Path, takes: int, per_tx: int = 20, seed: int = 2024) -> tuple[Path, Path]:
    """The cached state and deployment files, built if missing (a minute or two for 40k)."""
    state, deployment_file = state_files(cache, takes, per_tx)
    if _complete(state) and deployment_file.exists():
        return state, deployment_file
    cache.mkdir(parents=True, exist_ok=True)
    partial = state.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    txs = transactions(takes, per_tx, seed)
    log(f"building {len(txs):,} takeOrders transactions ({takes:,} takes) into {state} ...")
    began = time.monotonic()
    anvil = AnvilProcess(
        cache / "build-anvil.log",
        extra_args=("--dump-state", str(partial), "--gas-limit", BUILD_GAS_LIMIT),
    )
    with anvil, JsonRpcClient(anvil.http_url) as rpc:
        deployment = deploy(rpc)
        rpc.call("evm_setAutomine", [False])
        sender = TxSender(rpc, max_unconfirmed=10**9)
        for index, tx in enumerate(txs):
            send_planned(sender, tx, deployment)
            rpc.call("evm_mine", [])
            sender.flush()  # back-pressure: every receipt before the next send
            if index % 250 == 0:
                log(f"  {index:,}/{len(txs):,} txs, {time.monotonic() - began:.0f} s")
        # anvil writes --dump-state as it exits: hundreds of MB, which can take longer than
        # AnvilProcess.stop's grace period on a busy machine (then it is killed mid-write)
        process = anvil._proc  # wait for the dump however long it takes
        if process is not None:
            process.terminate()
            process.wait()
    if not _complete(partial):
        raise SystemExit(f"anvil wrote no complete state file; see {anvil.log_path}")
    partial.rename(state)
    deployment.save(deployment_file)
    log(f"built in {time.monotonic() - began:.0f} s")
    return state, deployment_file


def _complete(state: Path) -> bool:
    """A whole JSON dump ends with its closing brace (a killed write stops mid-string)."""
    if not state.exists() or state.stat().st_size == 0:
        return False
    with state.open("rb") as file:
        file.seek(-64 if state.stat().st_size > 64 else 0, 2)
        return file.read().rstrip().endswith(b"}")


def load(state: Path, log_dir: Path) -> AnvilProcess:
    """An anvil serving the cached chain (no mining: the history is fixed)."""
    return AnvilProcess(
        log_dir / "bench-anvil.log", extra_args=("--load-state", str(state), "--no-mining")
    )


__all__ = ["Deployment", "build", "load", "transactions"]
