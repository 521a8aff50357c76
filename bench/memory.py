"""(e) Memory flat in history length, and an empty range costing nothing per block.

``bot backfill`` (whole process, fresh database, default settings) against the stub JSON-RPC
node (``bench/stub_node.py``, a process of its own) serving 100,000 and then 1,000,000 synthetic
events (20 a block, ~10 % of transactions ours); the bot's peak RSS is its own ``VmHWM``
(see ``bench/botproc.py``: ``ru_maxrss`` of a child includes the parent's).
Then a stub with no events and a head at block 1,000,000: the catch-up of
that empty range, timed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench import botproc
from bench.context import Context
from bench.report import Row, Section, log, ratio
from bot.devnet.synthetic import ORDERBOOK, OWNER

NAME = "memory"
TITLE = "Memory and empty ranges (stub node)"


@contextmanager
def stub(events: int, blocks: int = 0) -> Iterator[dict[str, Any]]:
    """A stub node process; yields its first stdout line (url, ws_url, events, head)."""
    command = [sys.executable, "-m", "bench.stub_node", "--events", str(events)]
    if blocks:
        command += ["--blocks", str(blocks)]
    env = {**os.environ, "PYTHONPATH": str(botproc.ROOT)}
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, env=env, cwd=botproc.ROOT
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line:
                raise RuntimeError("the stub node exited before listening")
            yield dict(json.loads(line))
        finally:
            process.terminate()
            process.wait(timeout=30)


def backfill(
    ctx: Context, events: int, blocks: int = 0
) -> tuple[botproc.BotRun, dict[str, Any], dict[str, int]]:
    folder = ctx.work / f"memory-{events}-{blocks}"
    folder.mkdir()
    db = folder / "bot.db"
    with stub(events, blocks) as node:
        config = botproc.write_config(
            folder,
            http_url=node["url"],
            ws_url=node["ws_url"],
            orderbook=ORDERBOOK,
            owner=OWNER,
            deployment_block=node["first_block"],
            db=db,
        )
        run = botproc.run_backfill(config)
    counts = botproc.db_counts(db)
    log(
        f"{events:,} events / head {node['head']:,}: {run.wall_s:.1f} s, {run.rss_mb:.0f} MB, "
        f"{run.phases()}, {counts}"
    )
    return run, node, counts


def run(ctx: Context) -> Section:
    small_n, large_n = ctx.size(100_000, 4_000), ctx.size(1_000_000, 12_000)
    empty_blocks = ctx.size(1_000_000, 5_000)
    small, small_node, small_counts = backfill(ctx, small_n)
    large, large_node, large_counts = backfill(ctx, large_n)
    empty, empty_node, _ = backfill(ctx, 0, empty_blocks)
    rows = [
        Row(
            f"peak RSS of `bot backfill`, {large_node['events']:,} events",
            f"{large.rss_mb:.0f} MB",
            f"{small_node['events']:,} events: {small.rss_mb:.0f} MB",
            ratio(large.rss_mb, small.rss_mb),
            "≤ 1.2×",
        ),
        Row(
            f"`bot backfill` of an empty {empty_node['head']:,}-block range (whole process)",
            f"{empty.wall_s:.1f} s",
            f"{small_node['events']:,} events, {small_node['head']:,} blocks: {small.wall_s:.1f} s",
            "",
            "seconds",
        ),
    ]

    def line(
        label: str, r: botproc.BotRun, node: dict[str, Any], counts: dict[str, int] | None
    ) -> str:
        p = r.phases()
        return (
            f"| {label} | {node['events']:,} | {node['head']:,} | {r.wall_s:.1f} | "
            f"{p.get('fetch_store_s', 0):.1f} | {p.get('after_backfill_s', 0):.1f} | "
            f"{r.rss_mb:.0f} | "
            f"{counts.get('executions', '-') if counts else '-'} |"
        )

    body = f"""The stub serves a 4,000-log pool of distinct synthetic transactions repeated with
shifted blocks and unique transaction hashes (so every log is new to the bot); the bot runs with its
default settings (`[backfill]` workers 8, 1,000-block windows).

| run | events | head block | wall s | fetch+store s | drain + exit s | peak RSS MB | executions |
|---|---|---|---|---|---|---|---|
{line("small", small, small_node, small_counts)}
{line("large", large, large_node, large_counts)}
{line("empty range", empty, empty_node, None)}
"""
    return Section(NAME, TITLE, rows, body)
