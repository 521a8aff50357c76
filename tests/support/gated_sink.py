"""A backfill sink in front of the real store whose writes wait for a gate the test opens."""

from __future__ import annotations

import asyncio

from bot.core.heads import Head
from bot.core.model import RawLog
from bot.store.chain_state import ChainStore


class GatedSink:
    def __init__(self, store: ChainStore) -> None:
        self._store = store
        self.gate = asyncio.Event()
        self.waiting = False  # a write is held at the gate

    async def store(self, logs: list[RawLog]) -> int:
        self.waiting = True
        await self.gate.wait()
        return await self._store.store(logs)

    async def advance(self, head: Head) -> None:
        await self._store.advance(head)

    async def reconcile(self, head: Head, logs: list[RawLog]) -> int:
        return await self._store.reconcile(head, logs)
