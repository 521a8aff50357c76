"""Letting a step in progress finish when a stop is requested, for a while."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from loguru import logger


async def step_or_stop(
    step: Coroutine[Any, Any, None], stop: asyncio.Event, grace_s: float
) -> None:
    """Run ``step``; a stop request lets it finish for ``grace_s``, then cancels it (a step
    waiting out a dead provider could take minutes; every write it makes is one atomic
    transaction, so a cancelled step leaves nothing half-done)."""
    task = asyncio.ensure_future(step)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            await asyncio.wait({task}, timeout=grace_s)
        if not task.done():
            logger.info("stop requested: cancelling the live step still waiting")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return
        task.result()
    finally:
        stopper.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
