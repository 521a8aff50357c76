"""A catch-up's drain running behind its backfill (issue 9): book what the checkpoint has passed
while later windows are still being fetched, so the drain overlaps the fetch instead of adding
to it.

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

from loguru import logger

from bot.core.ranges import BlockRange
from bot.engine.drain import Engine
from bot.errors import TransientError
from bot.store.chain_state import ChainStore


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
