"""Client-side pacing of the account's request budget (Alpaca: 200 requests/min, ALPACA.md §1.8).

Rules:

- A sliding window: at most ``limit`` requests were sent in any ``window_s`` seconds.
- Placements go first: a placement may use the whole window; any other request waits while
  fewer than ``reserve`` slots are left (about 20% of the budget), so polling and lookups never
  eat the room an order needs.
- The limiter only computes; the caller sleeps. Its clock is injectable, so the rules are
  tested without sleeping.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable


class SlidingWindowLimiter:
    """``delay(placement)`` says how long to wait; ``record()`` notes a request sent now."""

    def __init__(
        self,
        limit: int,
        *,
        window_s: float = 60.0,
        reserve_fraction: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1 request per window")
        self.limit = limit
        self.window_s = window_s
        # At least one slot is kept for placements whenever the budget has room for one read too.
        self.reserve = min(limit - 1, max(1, math.ceil(limit * reserve_fraction)))
        self._clock = clock
        self._sent: deque[float] = deque()

    def _prune(self, now: float) -> None:
        while self._sent and self._sent[0] <= now - self.window_s:
            self._sent.popleft()

    def in_window(self) -> int:
        self._prune(self._clock())
        return len(self._sent)

    def delay(self, *, placement: bool) -> float:
        """Seconds until a request of this kind may be sent (0.0: now)."""
        now = self._clock()
        self._prune(now)
        cap = self.limit if placement else self.limit - self.reserve
        count = len(self._sent)
        if count < cap:
            return 0.0
        # ``count - cap + 1`` requests must leave the window; the last of them is this one.
        frees_at = self._sent[count - cap] + self.window_s
        return max(frees_at - now, 0.0)

    def record(self) -> None:
        self._sent.append(self._clock())
