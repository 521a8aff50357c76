"""The two request lanes (live before backfill) and the request-rate limit that serves them in
that order (SPEC §6: live requests are never queued behind backfill requests)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from enum import IntEnum


class Lane(IntEnum):
    """Lower goes first."""

    LIVE = 0
    BACKFILL = 1


class RateLimiter:
    """At most ``per_second`` requests a second (0: unlimited), live lane served first."""

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = 1.0 / per_second if per_second > 0 else 0.0
        self._clock = clock
        self._next_slot = 0.0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._wakeup: asyncio.TimerHandle | None = None

    async def acquire(self, lane: Lane) -> None:
        if self._interval == 0:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (int(lane), next(self._seq), future))
        self._serve()
        await future

    def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiters:
            now = self._clock()
            if now < self._next_slot:
                if self._wakeup is None:
                    self._wakeup = loop.call_later(self._next_slot - now, self._woken)
                return
            _lane, _seq, future = heapq.heappop(self._waiters)
            if future.done():
                continue
            future.set_result(None)
            self._next_slot = max(now, self._next_slot) + self._interval

    def _woken(self) -> None:
        self._wakeup = None
        self._serve()
