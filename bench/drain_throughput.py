"""Drain throughput: events/s through owner check, decode, conversion, the accumulator and the
dry-run broker, with atomic commits (synchronous=FULL), on a real SQLite file.

    .venv/bin/python bench/drain_throughput.py [--events 20000] [--batch 500 2000 5000]

About 10% of the synthetic events are ours (bot.devnet.synthetic). Enqueueing is timed apart.
One ``Engine.drain()`` call is one pass: it books every pending event in batches of
``batch_size`` and hedges the net of each ticker at its end (so ``executions`` is a handful).
``python -m bench --only drain`` runs :func:`measure` and writes its section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from loguru import logger

from bot.broker.dry_run import DryRunBroker
from bot.core.model import RawLog, TokenInfo
from bot.core.tokens import DEFAULT_RULES
from bot.devnet.synthetic import ORDERBOOK, OWNER, SYNTHETIC_TOKENS, synthetic_transactions
from bot.engine import Engine, EngineOptions
from bot.store import queue
from bot.store.connection import ServedChain, connect


class TableChain:
    async def token_info(self, address: str) -> TokenInfo:
        return SYNTHETIC_TOKENS[address]

    async def receipt_logs(self, tx_hash: str) -> list[RawLog]:
        return []


async def measure(
    logs: list[RawLog], batch: int, threshold: int, folder: Path
) -> tuple[float, float, dict[str, int]]:
    db_path = folder / f"bench-{batch}-{threshold}.db"
    engine = await Engine.open(
        db_path,
        ServedChain(31337, ORDERBOOK, OWNER, 0),
        broker=DryRunBroker(),
        chain=TableChain(),
        rules=DEFAULT_RULES,
        options=EngineOptions(batch_size=batch, threshold_shares=threshold),
    )
    await engine.start()
    conn = await connect(db_path)
    started = time.perf_counter()
    for start in range(0, len(logs), 5000):
        await queue.enqueue(conn, logs[start : start + 5000])
    enqueue_s = time.perf_counter() - started
    await conn.close()
    started = time.perf_counter()
    stats = await engine.drain(up_to_block=10**12)
    drain_s = time.perf_counter() - started
    await engine.close()
    return (
        enqueue_s,
        drain_s,
        {
            "events": stats.events,
            "ours": stats.ours,
            "trades": stats.trades,
            "executions": stats.executions,
            "failed": stats.failed,
        },
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, nargs="+", default=[500, 2000, 5000])
    parser.add_argument(
        "--threshold",
        type=int,
        nargs="+",
        default=[1, 10**9],
        help="1: the net of each ticker hedged at the pass's end; 10**9: no executions",
    )
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    logs = [log for tx in synthetic_transactions(args.events, seed=1) for log in tx.logs]
    with tempfile.TemporaryDirectory() as folder:
        for threshold, batch in ((t, b) for t in args.threshold for b in args.batch):
            enqueue_s, drain_s, stats = await measure(logs, batch, threshold, Path(folder))
            print(
                f"threshold {threshold:>10} batch {batch:5d}: "
                f"drain {len(logs) / drain_s:8,.0f} events/s of all queued "
                f"({drain_s:.2f} s; {stats}); enqueue {len(logs) / enqueue_s:8,.0f} logs/s"
            )


if __name__ == "__main__":
    asyncio.run(main())
