"""(d) The drain: events/s of ``Engine.drain`` (one pass: owner check, decode of ours,
conversion, accumulator, atomic batches, the net hedged at the end with the dry-run broker) over
synthetic events with ~10 % ours, on a real SQLite file (synchronous=FULL).

Reuses ``bench/drain_throughput.py``'s :func:`measure`: a fresh engine and database per run, the
events enqueued first (timed apart), then one ``drain()`` call timed.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from loguru import logger

from bench.context import Context
from bench.drain_throughput import measure
from bench.report import Row, Section, log, median, ratio
from bot.devnet.synthetic import synthetic_transactions
from bot.engine.drain import DEFAULT_BATCH_SIZE

NAME = "drain"
TITLE = "Drain throughput (Engine.drain, one pass)"
GOAL = 50_000  # events/s, issue 9


def run(ctx: Context) -> Section:
    n = ctx.size(20_000, 2_000)
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    logs = [log_ for tx in synthetic_transactions(n, seed=1) for log_ in tx.logs]
    batches = sorted({500, DEFAULT_BATCH_SIZE, 5000})
    results: dict[int, list[tuple[float, float, dict[str, int]]]] = {b: [] for b in batches}
    for number in range(ctx.runs):
        for batch in batches:
            folder = ctx.work / f"drain-{number}-{batch}"
            folder.mkdir()
            results[batch].append(asyncio.run(measure(logs, batch, 1, Path(folder))))
            _enqueue_s, drain_s, stats = results[batch][-1]
            log(f"run {number + 1} batch {batch}: {len(logs) / drain_s:,.0f} events/s {stats}")
    head = results[DEFAULT_BATCH_SIZE]
    drain_s = median(d for _, d, _ in head)
    rate = len(logs) / drain_s
    stats = head[0][2]
    rows = [
        Row(
            f"`Engine.drain`, {len(logs):,} events ({stats['ours']:,} ours), "
            f"batch {DEFAULT_BATCH_SIZE}",
            f"{rate:,.0f} events/s",
            f"goal {GOAL:,} events/s",
            ratio(GOAL, rate),
            "≥ 50,000 events/s",
        ),
        Row(
            "orders placed by that pass (executions)",
            f"{stats['executions']:,}",
            f"{stats['trades']:,} trades booked",
            "",
            "one per ticker",
        ),
    ]
    table = "\n".join(
        f"| {b} | {len(logs) / median(d for _, d, _ in rs):,.0f} | "
        f"{len(logs) / median(e for e, _, _ in rs):,.0f} | {rs[0][2]} |"
        for b, rs in results.items()
    )
    enqueue_s = median(e for e, _, _ in head)
    rows.append(
        Row(
            f"store + drain of the {len(logs):,} events (enqueue, then one pass)",
            f"{len(logs) / (enqueue_s + drain_s):,.0f} events/s",
            f"enqueue alone {len(logs) / enqueue_s:,.0f} logs/s",
            "",
            "(the whole queue's cost)",
        )
    )
    body = f"""Synthetic events of `bot.devnet.synthetic` (takes and clears, ~10 % of transactions
ours),
threshold 1 share, dry-run broker, a token table in memory (no RPC); medians of {ctx.runs} runs.
Events/s are over **all** queued events. The owner of each log is read when it is stored
(`bot.store.queue.insert_new_in_txn`, ~2 µs a log): a log of another owner is stored processed,
so the pass reads back, decodes and books only the {stats["events"]:,} rows that may be ours;
the enqueue figure includes that classification.

| batch_size | drain events/s | enqueue logs/s | stats of the first run |
|---|---|---|---|
{table}
"""
    return Section(NAME, TITLE, rows, body)
