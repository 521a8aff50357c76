"""``bot backfill``: a catch-up, whose drain runs behind its backfill (issue 9): it books what the
checkpoint has passed while later windows are still being fetched, so the drain overlaps the
fetch instead of adding to it.

The backfill's writer calls :meth:`DrainBehind.on_window` after it stores each window; when the
checkpoint has moved since the last pass, one pass books every pending event up to it (never
above ``end``) with ``hedge=False``, so the backlog still becomes one order per ticker: the hedge
is decided by the ordinary pass after the backfill. The pass runs in the writer's turn, between
its transactions, so the two never contend for SQLite's write lock, while the fetch workers keep
fetching the next windows. It only books what is durable below the checkpoint, in atomic
transactions; a batch whose rows a reorg moved is read again later (a queue race), a processed
row reorged out is compensated by the next pass, exactly as in ``run``. So it moves work
earlier and changes nothing else: the pass after the backfill books whatever is left.
"""

from __future__ import annotations

from typing import Any

from loguru import logger

from bot.config import LoadedConfig
from bot.core.ranges import BlockRange
from bot.engine.drain import Engine
from bot.errors import TransientError
from bot.metrics import Metrics
from bot.store.chain_state import ChainStore
from bot.sync.session import Session


class DrainBehind:
    """Pass :meth:`on_window` as the backfill's ``on_window`` hook."""

    def __init__(self, engine: Engine, store: ChainStore, end: int) -> None:
        self._engine = engine
        self._store = store
        self._end = end
        self._bound = -1
        self.passes = 0
        self.events = 0

    async def on_window(self, _window: BlockRange) -> None:
        checkpoint = await self._store.checkpoint()
        if checkpoint is None:
            return
        bound = min(checkpoint.number, self._end)
        if bound <= self._bound:
            return
        try:
            stats = await self._engine.drain(bound, hedge=False)
        except TransientError as exc:  # a queue race or a busy database: at the next window
            logger.info("drain behind the backfill: {}; trying again later", exc)
            return
        self._bound = bound
        self.passes += 1
        self.events += stats.events


async def backfill_command(
    loaded: LoadedConfig, to_block: int | None, from_block: int | None = None
) -> dict[str, Any]:
    """``bot backfill [--from N] [--to M]``: catch up to M (default head - confirmations),
    process everything up to it (SPEC §6: the checkpoint target is the drain's bound), exit.

    ``--from`` below the checkpoint first re-scans ``N..`` up to the checkpoint into the queue,
    like a backfill job (only what is missing is added; the checkpoint never moves back); it
    never skips blocks above the checkpoint. Defaults: ``BACKFILL_START_HEIGHT`` /
    ``BACKFILL_END_HEIGHT`` (seed 000's names)."""
    to_block = loaded.backfill_to if to_block is None else to_block
    from_block = loaded.backfill_from if from_block is None else from_block
    session = Session(loaded, Metrics())
    try:
        await session.open()

        async def catch_up() -> dict[str, Any]:
            head = await session.calls.block_number()
            end = head - session.confirmations if to_block is None else to_block
            start = await session.verify_checkpoint()
            rescan = None
            if from_block is not None and from_block < start:
                rescan = await session.rescan(from_block, min(start - 1, end))
            elif from_block is not None and from_block > start:
                logger.info(
                    "--from {} is above the checkpoint: blocks are never skipped, starting at {}",
                    from_block,
                    start,
                )
            events = 0
            if end >= start:
                assert session.engine is not None and session.store is not None
                behind = None
                if loaded.settings.backfill.drain_behind:
                    behind = DrainBehind(session.engine, session.store, end)
                hook = None if behind is None else behind.on_window
                events = await session.run_backfill(start, end, head=head, on_window=hook)
                if behind is not None:
                    logger.info(
                        "drained {} events behind the backfill in {} passes", behind.events,
                        behind.passes,
                    )  # fmt: skip
            bound = await session.drain(up_to=end)
            summary: dict[str, Any] = {
                "from": start,
                "to": end,
                "events": events,
                "processed_up_to": bound,
            }
            if rescan is not None:
                summary["rescan"] = rescan
            return summary

        return await session.wait_out("backfilling", catch_up)
    finally:
        await session.close()
