"""Live latency: a log arriving on the socket -> its trade committed, per event (SPEC §1, §7).

    .venv/bin/python bench/live_latency.py [--fills 200] [--warmup 5] [--workers 4]

Starts a fresh anvil (automine: one block per transaction), deploys the test contracts, and runs
the real ``Runner`` (what ``bot run`` runs) in this process against it, with the dry-run broker.
Once it is live, sends ``--fills`` of our takes one at a time: each is sent, then the next waits
until its trade is committed (so every figure is one event alone, not a queue).

Measured per event, in-process:
- log -> trade: the runner's own ``live_log_to_trade_seconds`` observations (socket receipt of
  the log, then the head, its reconcile, the checkpoint, the drain's commit); every
  ``observe()`` is recorded here, so the median and p99 are exact, not histogram buckets;
- send -> trade: ``eth_sendTransaction`` sent -> the same commit (adds mining and delivery).
Logs go to a file in the temporary folder, as they would in production (not to a terminal).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from loguru import logger

from bot.config import load
from bot.devnet.anvil import AnvilProcess
from bot.devnet.contracts import TxSender
from bot.devnet.deploy import Deployment, deploy
from bot.devnet.plan import US, PlannedTx, TakeFill, iter_fills
from bot.devnet.rpc import JsonRpcClient
from bot.devnet.simulate import send_planned
from bot.sync.runner import Runner

WAIT_S = 30.0


def our_takes(seed: int) -> Iterator[PlannedTx]:
    """One-fill transactions: takes of our orders."""
    for fill in iter_fills(random.Random(seed)):
        if isinstance(fill, TakeFill) and fill.order.owner == US:
            yield PlannedTx((fill,))


def write_config(folder: Path, anvil: AnvilProcess, deployment: Deployment, workers: int) -> Path:
    path = folder / "bot.toml"
    path.write_text(
        f"""
[chain]
ws_url = "{anvil.ws_url}"
http_url = "{anvil.http_url}"

[orderbook]
address = "{deployment.orderbook}"
deployment_block = {deployment.deployment_block}
order_owner = "{deployment.order_owner}"

[database]
path = "{folder / "bot.db"}"

[backfill]
workers = {workers}

[live]
first_event_timeout_s = 1

[metrics]
port = 0
"""
    )
    return path


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(name: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return (
        f"{name:14}: median {statistics.median(ms):6.2f} ms, p90 {percentile(ms, 90):6.2f} ms, "
        f"p99 {percentile(ms, 99):6.2f} ms, max {max(ms):6.2f} ms (n={len(ms)})"
    )


async def measure(folder: Path, fills: int, warmup: int, workers: int) -> None:
    logger.remove()
    logger.add(folder / "bot.log", level="INFO", enqueue=False)
    with AnvilProcess(folder / "anvil.log") as anvil, JsonRpcClient(anvil.http_url) as rpc:
        deployment = deploy(rpc)
        loaded = load(write_config(folder, anvil, deployment, workers))
        stop = asyncio.Event()
        runner = Runner(loaded, stop)
        observed: list[float] = []
        arrived = asyncio.Event()
        histogram = runner.metrics.live_log_to_trade_seconds
        original = histogram.observe

        def recording(value: float, *args: object, **kwargs: object) -> None:
            observed.append(value)
            arrived.set()
            original(value)

        setattr(histogram, "observe", recording)  # noqa: B010 - record every observation
        task = asyncio.create_task(runner.run())
        deadline = time.monotonic() + WAIT_S
        while not runner.live:
            if task.done():
                task.result()
                raise SystemExit("the runner ended before going live")
            if time.monotonic() > deadline:
                raise SystemExit(f"not live after {WAIT_S} s; see {folder / 'bot.log'}")
            await asyncio.sleep(0.01)

        sender = TxSender(rpc)
        send_to_trade: list[float] = []
        log_to_trade: list[float] = []
        plan = our_takes(seed=7)
        for index in range(warmup + fills):
            tx = next(plan)
            before = len(observed)
            arrived.clear()
            sent_at = time.monotonic()
            await asyncio.to_thread(send_planned, sender, tx, deployment)
            while len(observed) == before:
                try:
                    await asyncio.wait_for(arrived.wait(), WAIT_S)
                except TimeoutError:
                    raise SystemExit(f"fill {index} was not booked within {WAIT_S} s") from None
                arrived.clear()
            booked_at = time.monotonic()
            await asyncio.to_thread(sender.flush)  # every fill succeeded on chain
            if index >= warmup:
                send_to_trade.append(booked_at - sent_at)
                log_to_trade.extend(observed[before:])
        stop.set()
        await task
        count = sum(
            s.value
            for metric in runner.metrics.registry.collect()
            if metric.name == "live_log_to_trade_seconds"
            for s in metric.samples
            if s.name.endswith("_count")
        )
    print(f"{fills} of our fills, one at a time, after {warmup} warm-up fills (anvil automine)")
    print(summary("log -> trade", log_to_trade))
    print(summary("send -> trade", send_to_trade))
    print(f"histogram live_log_to_trade_seconds count: {count:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fills", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-live-") as folder:
        asyncio.run(measure(Path(folder), args.fills, args.warmup, args.workers))


if __name__ == "__main__":
    main()
