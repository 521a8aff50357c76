"""Backfill throughput next to the raw ceiling, on the same anvil in one run (SPEC §6).

    .venv/bin/python bench/backfill_vs_raw.py [--events 100000] [--blocks 5000] [--rounds 3]
        [--window 500] [--concurrency 4] [--cache DIR] [--rebuild]

(a) raw: concurrent ``eth_getLogs`` of the whole range (aiohttp + ``json.loads``, ``--concurrency``
    requests in flight, ``--window``-block windows), logs counted and dropped;
(b) bot: the ``Backfill`` class (same workers and window size) storing them through a
    ``ChainStore`` into a fresh SQLite file (WAL, synchronous=FULL), checkpoint advanced.

Rounds alternate raw, bot, raw, bot... and each round runs in a child process of its own, so each
side's peak RSS (``ru_maxrss``) is its own; the timing excludes interpreter start-up. Prints each
round, then the medians (events/s), the bot/raw ratio and the peak RSS of each side.

The chain (~``--events`` orderbook events: takes and clears, ours and others', over ``--blocks``
blocks) is built once with ``--no-mining`` + one ``evm_mine`` per transaction (receipts awaited,
so the pool never piles up) and kept as an anvil ``--dump-state`` file in ``--cache`` (default:
``$TMPDIR/bot-bench-cache``); later runs ``--load-state`` it in a few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bot.devnet.anvil import AnvilProcess
from bot.devnet.contracts import TxSender
from bot.devnet.deploy import Deployment, deploy
from bot.devnet.plan import ClearFill, PlannedTx, TakeFill, iter_fills
from bot.devnet.rpc import JsonRpcClient
from bot.devnet.simulate import send_planned

FILLS_PER_TX = 16  # takes emit 1 log each, clears 2: ~20 logs per block on average
BUILD_GAS_LIMIT = "100000000"


def _transactions(events: int, seed: int) -> list[PlannedTx]:
    """Transactions of FILLS_PER_TX same-kind fills (takeOrders / clearMany) making ``events``."""
    takes: list[TakeFill] = []
    clears: list[ClearFill] = []
    txs: list[PlannedTx] = []
    made = 0
    for fill in iter_fills(random.Random(seed)):
        if made >= events:
            break
        if isinstance(fill, TakeFill):
            takes.append(fill)
            made += 1
            if len(takes) == FILLS_PER_TX:
                txs.append(PlannedTx(tuple(takes)))
                takes = []
        else:
            clears.append(fill)
            made += 2
            if len(clears) == FILLS_PER_TX:
                txs.append(PlannedTx(tuple(clears)))
                clears = []
    if takes:
        txs.append(PlannedTx(tuple(takes)))
    if clears:
        txs.append(PlannedTx(tuple(clears)))
    random.Random(seed).shuffle(txs)
    return txs


def build_state(cache: Path, events: int, blocks: int) -> tuple[Path, Path]:
    """The cached anvil state and deployment for this size, built if missing."""
    state = cache / f"anvil-{events}-{blocks}.json"
    deployment_file = cache / f"deployment-{events}-{blocks}.json"
    if state.exists() and deployment_file.exists():
        return state, deployment_file
    cache.mkdir(parents=True, exist_ok=True)
    partial = state.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    txs = _transactions(events, seed=2024)
    empty_every = max(1, blocks // max(1, blocks - len(txs))) if blocks > len(txs) else 0
    print(f"building {len(txs):,} transactions (~{events:,} events) into {state} ...", flush=True)
    began = time.monotonic()
    anvil = AnvilProcess(
        cache / "build-anvil.log",
        extra_args=("--dump-state", str(partial), "--gas-limit", BUILD_GAS_LIMIT),
    )
    with anvil, JsonRpcClient(anvil.http_url) as rpc:
        deployment = deploy(rpc)
        rpc.call("evm_setAutomine", [False])
        sender = TxSender(rpc, max_unconfirmed=10**9)
        mined = 0
        for index, tx in enumerate(txs):
            send_planned(sender, tx, deployment)
            rpc.call("evm_mine", [])
            sender.flush()
            mined += 1
            if empty_every and index % empty_every == 0 and mined < blocks:
                rpc.call("evm_mine", [])  # an empty block: logs spread over ``blocks``
                mined += 1
            if index % 500 == 0:
                print(f"  {index:,}/{len(txs):,} txs, {time.monotonic() - began:.0f} s", flush=True)
        head = int(rpc.call("eth_blockNumber"), 16)
    # anvil writes --dump-state when it exits (stop() sends SIGTERM and waits)
    if not partial.exists():
        raise SystemExit(f"anvil wrote no state file; see {anvil.log_path}")
    partial.rename(state)
    deployment.save(deployment_file)
    print(f"built up to block {head} in {time.monotonic() - began:.0f} s", flush=True)
    return state, deployment_file


# ----------------------------------------------------------------------------- child rounds


async def _raw_round(url: str, address: str, start: int, end: int, args: Any) -> dict[str, Any]:
    from bench.rawfetch import raw

    began = time.perf_counter()
    count = await raw(url, address, start, end, args.window, args.concurrency)
    return {"events": count, "seconds": time.perf_counter() - began}


async def _bot_round(
    url: str, deployment: Deployment, start: int, end: int, args: Any
) -> dict[str, Any]:
    from loguru import logger

    from bot.chain.endpoint import Endpoint
    from bot.chain.transport import transport_for
    from bot.core.abi import ORDERBOOK_TOPICS
    from bot.store.chain_state import ChainStore
    from bot.store.connection import ServedChain, open_database
    from bot.sync.backfill import Backfill, LogFilter

    logger.remove()  # the per-window progress lines are not what is measured
    logger.add(sys.stderr, level="WARNING")
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as folder:
        db = Path(folder) / "bot.db"
        served = ServedChain(
            deployment.chain_id,
            deployment.orderbook,
            deployment.order_owner,
            deployment.deployment_block,
        )
        conn, _meta = await open_database(db, served)  # migrate, as `bot run` does first
        await conn.close()
        store = await ChainStore.open(db)
        endpoint = Endpoint(transport_for(url))
        backfill = Backfill(
            endpoint,
            store,
            LogFilter(deployment.orderbook, ORDERBOOK_TOPICS),
            workers=args.concurrency,
            batch_blocks=args.window,
        )
        began = time.perf_counter()
        result = await backfill.run(start, end)
        seconds = time.perf_counter() - began
        checkpoint = await store.checkpoint()
        await store.connection.close()
        await endpoint.close()
        size_mb = _folder_mb(Path(folder))
    assert checkpoint is not None and checkpoint.number == end
    return {"events": result.events, "stored": result.stored, "seconds": seconds, "db_mb": size_mb}


def _folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.iterdir()) / 1e6


def _child(args: argparse.Namespace) -> None:
    deployment = Deployment.load(Path(args.deployment))
    if args.child == "raw":
        coro = _raw_round(args.url, deployment.orderbook, args.start, args.end, args)
    else:
        coro = _bot_round(args.url, deployment, args.start, args.end, args)
    report = asyncio.run(coro)
    report["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(report))


# ----------------------------------------------------------------------------- parent


def _round(kind: str, url: str, deployment: Path, blocks: range, args: Any) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--url",
        url,
        "--deployment",
        str(deployment),
        "--start",
        str(blocks.start),
        "--end",
        str(blocks.stop - 1),
        "--window",
        str(args.window),
        "--concurrency",
        str(args.concurrency),
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--blocks", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=4)
    default_cache = Path(tempfile.gettempdir()) / "bot-bench-cache"
    parser.add_argument("--cache", type=Path, default=default_cache)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--child", choices=("raw", "bot"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--deployment", help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--end", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    if args.rebuild:
        for stale in args.cache.glob(f"*-{args.events}-{args.blocks}.json"):
            stale.unlink()
    state, deployment_file = build_state(args.cache, args.events, args.blocks)
    deployment = Deployment.load(deployment_file)
    began = time.monotonic()
    anvil = AnvilProcess(
        args.cache / "bench-anvil.log", extra_args=("--load-state", str(state), "--no-mining")
    )
    with anvil, JsonRpcClient(anvil.http_url) as rpc:
        end = int(rpc.call("eth_blockNumber"), 16)
        start = deployment.deployment_block
        print(
            f"anvil loaded {state.name} in {time.monotonic() - began:.1f} s: blocks {start}-{end}, "
            f"window {args.window}, {args.concurrency} concurrent, {args.rounds} rounds each"
        )
        results: dict[str, list[dict[str, Any]]] = {"raw": [], "bot": []}
        for round_no in range(1, args.rounds + 1):
            for kind in ("raw", "bot"):
                r = _round(kind, anvil.http_url, deployment_file, range(start, end + 1), args)
                results[kind].append(r)
                extra = f", db {r['db_mb']:.0f} MB" if kind == "bot" else ""
                print(
                    f"round {round_no} {kind}: {r['events']:,} events in {r['seconds']:.2f} s = "
                    f"{r['events'] / r['seconds']:,.0f} events/s, peak RSS {r['rss_mb']:.0f} MB"
                    f"{extra}",
                    flush=True,
                )
    counts = {r["events"] for rs in results.values() for r in rs}
    if len(counts) != 1:
        raise SystemExit(f"the two sides saw different event counts: {sorted(counts)}")
    events = counts.pop()
    median = {k: statistics.median(r["seconds"] for r in rs) for k, rs in results.items()}
    rate = {k: events / s for k, s in median.items()}
    rss = {k: max(r["rss_mb"] for r in rs) for k, rs in results.items()}
    print(f"events: {events:,} (blocks {start}-{end})")
    print(f"raw eth_getLogs : {rate['raw']:>9,.0f} events/s (median {median['raw']:.2f} s)")
    print(f"bot Backfill    : {rate['bot']:>9,.0f} events/s (median {median['bot']:.2f} s)")
    print(f"ratio bot/raw   : {rate['bot'] / rate['raw']:.2f}")
    print(f"peak RSS        : raw {rss['raw']:.0f} MB, bot {rss['bot']:.0f} MB")


if __name__ == "__main__":
    main()
