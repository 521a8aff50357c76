"""``bot run`` and ``bot backfill``: the commands that hold the instance lock and write."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from collections.abc import Callable
from typing import Any

from loguru import logger

from bot.config import LoadedConfig, load
from bot.sync.runner import Runner, backfill_command

Handler = Callable[[argparse.Namespace], int]


async def run_until_stopped(loaded: LoadedConfig, stop: asyncio.Event | None = None) -> None:
    """Run the bot until SIGINT/SIGTERM (or ``stop``): the live loop ends after its current
    step; earlier phases are cancelled, which rolls back their open transaction (each one is
    atomic, so nothing is half-written either way)."""
    stop = stop or asyncio.Event()
    runner = Runner(loaded, stop)
    task = asyncio.create_task(runner.run(), name="bot-run")
    loop = asyncio.get_running_loop()

    def on_signal(name: str) -> None:
        logger.info("{} received: stopping after the current step", name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig.name)
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if task not in done:
            if not runner.live:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        elif not (task.cancelled() and stop.is_set()):  # a stop seen inside a wait is clean
            task.result()
    finally:
        stopper.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    logger.info("stopped")


def _run(args: argparse.Namespace) -> int:
    loaded = load(args.config)
    asyncio.run(run_until_stopped(loaded))
    return 0


def _backfill(args: argparse.Namespace) -> int:
    loaded = load(args.config)
    summary: dict[str, Any] = asyncio.run(backfill_command(loaded, args.to, args.from_block))
    print(json.dumps(summary))
    return 0


def register(command: Callable[[str, Handler, str], argparse.ArgumentParser]) -> None:
    command("run", _run, "follow the chain and hedge fills until SIGINT/SIGTERM")
    sub = command(
        "backfill", _backfill, "catch up from the checkpoint to a block, process, and exit"
    )
    sub.add_argument(
        "--from",
        dest="from_block",
        type=int,
        default=None,
        metavar="N",
        help="first block: below the checkpoint it re-scans N.. into the queue, adding only "
        "what is missing (default: BACKFILL_START_HEIGHT, else the checkpoint + 1)",
    )
    sub.add_argument(
        "--to",
        type=int,
        default=None,
        metavar="M",
        help="last block (default: BACKFILL_END_HEIGHT, else head - confirmations)",
    )
