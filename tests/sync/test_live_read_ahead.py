"""The live step in process (the real ``Runner`` on a real anvil): each head with our logs is
reconciled with one by-hash read, started as its hint or head arrived, and every head is still
recorded for ``status`` (now after the drain, off the way to the hedge)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from bot.config import load
from bot.devnet.plan import make_plan
from bot.devnet.simulate import run_plan
from bot.sync.runner import Runner
from tests.support.botproc import write_config
from tests.support.chain import Chain
from tests.support.history import wait_until

PLAN_SEED = 17


def get_logs_calls(runner: Runner) -> int:
    return int(
        sum(
            sample.value
            for metric in runner.metrics.registry.collect()
            if metric.name == "rpc_requests"
            for sample in metric.samples
            if sample.name == "rpc_requests_total" and sample.labels["method"] == "eth_getLogs"
        )
    )


def meta_head(database: Path) -> int | None:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = 'head_block'").fetchone()
    return None if row is None else int(row[0])


def checkpoint_of(database: Path) -> int | None:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT block_number FROM checkpoint").fetchone()
    return None if row is None else int(row[0])


async def wait_for(condition: Callable[[], bool], what: str, task: asyncio.Task[None]) -> None:
    def done_or(condition: Callable[[], bool]) -> bool:
        return task.done() or condition()

    await wait_until(lambda: done_or(condition), timeout_s=60, what=what)
    if task.done():
        task.result()
        raise AssertionError(f"the runner ended while waiting for {what}")


async def test_one_read_per_head_and_every_head_recorded(chain: Chain, tmp_path: Path) -> None:
    database = tmp_path / "bot.db"
    config = write_config(
        tmp_path / "bot.toml",
        chain.deployment,
        ws_url=chain.ws_url,
        database=database,
        first_event_timeout_s=0.5,
    )
    stop = asyncio.Event()
    runner = Runner(load(config, {}), stop)
    task = asyncio.create_task(runner.run())
    try:
        await wait_for(lambda: runner.live, "the live phase", task)
        start = int(chain.rpc.call("eth_blockNumber", []), 16)
        await wait_for(lambda: checkpoint_of(database) == start, "the hand-off", task)
        reads_before = get_logs_calls(runner)
        started = time.monotonic()
        receipts = await asyncio.to_thread(
            run_plan, chain.rpc, chain.deployment, make_plan(seed=PLAN_SEED, fills=12)
        )
        tip = int(chain.rpc.call("eth_blockNumber", []), 16)
        await wait_for(lambda: meta_head(database) == tip, f"head {tip} recorded", task)
        await wait_for(lambda: checkpoint_of(database) == tip, f"checkpoint {tip}", task)
        ours = {
            int(receipt["blockNumber"], 16)
            for receipt in receipts
            if any(
                log["address"].lower() == chain.deployment.orderbook.lower()
                for log in receipt["logs"]
            )
        }
        assert ours, f"plan {PLAN_SEED} emitted no orderbook log"
        # one by-hash read per block with our logs (their blooms match), never two: the
        # hint's early read and the head's are the same read
        assert get_logs_calls(runner) - reads_before == len(ours), time.monotonic() - started
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
