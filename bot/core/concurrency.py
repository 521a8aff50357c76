"""Adaptive concurrency of the backfill's ``eth_getLogs`` workers (pure, no asyncio).

Additive increase, multiplicative decrease, as rindexer does: a provider that rate-limits us
halves the number of requests we keep in flight (never below 1), and after ``grow_after``
successes in a row with no rate limit the number grows back by one, up to the configured
``maximum``.

Requests in flight when the limit is cut were sent under the old limit, and a burst of them is
rate-limited together: counting each of their answers would halve the limit down to 1 for one
congestion event. So every request carries the *epoch* it was sent in (:attr:`epoch`, bumped on
each cut) and only a rate limit of a request sent since the last cut cuts again; any rate limit
still resets the streak of successes.
"""

from __future__ import annotations


class ConcurrencyLimit:
    """How many requests may be in flight now (:attr:`limit`), between 1 and ``maximum``."""

    def __init__(self, maximum: int, *, grow_after: int = 4) -> None:
        if maximum < 1:
            raise ValueError("maximum must be >= 1")
        if grow_after < 1:
            raise ValueError("grow_after must be >= 1")
        self.maximum = maximum
        self.limit = maximum
        self.grow_after = grow_after
        self.epoch = 0  # bumped on every cut; a request remembers the epoch it was sent in
        self.lowest = maximum  # the lowest limit reached (for reports and tests)
        self.cuts = 0
        self.raises = 0
        self._streak = 0

    def on_rate_limit(self, sent_in: int) -> bool:
        """A request sent in epoch ``sent_in`` was rate-limited; True when the limit was cut."""
        self._streak = 0
        if sent_in < self.epoch:
            return False  # sent before the last cut: part of the congestion already answered
        self.epoch += 1
        if self.limit == 1:
            return False
        self.limit = max(1, self.limit // 2)
        self.lowest = min(self.lowest, self.limit)
        self.cuts += 1
        return True

    def on_success(self) -> bool:
        """A request succeeded; True when the limit grew (by one, after a streak)."""
        self._streak += 1
        if self._streak < self.grow_after or self.limit >= self.maximum:
            return False
        self._streak = 0
        self.limit += 1
        self.raises += 1
        return True
