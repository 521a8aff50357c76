"""Alpaca's request budget: ``limit`` requests in a rolling minute per account [P1][P2] (pure).

Every answer carries ``X-Ratelimit-Limit``, ``X-Ratelimit-Remaining`` and ``X-Ratelimit-Reset``
(epoch seconds: when the oldest request in the window leaves it) and never ``Retry-After``
[P1][I14]. A request refused with 429 does not use up the budget.
"""

from __future__ import annotations

import collections
import math

WINDOW_S = 60.0


class RateWindow:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._times: collections.deque[float] = collections.deque()

    def admit(self, now: float) -> bool:
        """Count a request at ``now`` (epoch seconds) unless the minute's budget is spent."""
        while self._times and self._times[0] <= now - WINDOW_S:
            self._times.popleft()
        if len(self._times) >= self.limit:
            return False
        self._times.append(now)
        return True

    def headers(self, now: float, *, reset_in_1s: bool = False) -> dict[str, str]:
        """The three headers; ``reset_in_1s`` is the injected 429's (reset = now + 1 s)."""
        if reset_in_1s:
            remaining, reset = 0, math.ceil(now + 1)
        else:
            oldest = self._times[0] if self._times else now
            remaining, reset = max(0, self.limit - len(self._times)), math.ceil(oldest + WINDOW_S)
        return {
            "X-Ratelimit-Limit": str(self.limit),
            "X-Ratelimit-Remaining": str(remaining),
            "X-Ratelimit-Reset": str(reset),
        }
