"""Blocking reasons (SPEC §4): one set used by the hedge decision, ``idle`` and ``status``. Pure.

A reason blocks one ticker or, with ticker ``"*"``, all of them. Reasons with an ``until`` time
clear by themselves (a rejection backoff, an account-wide refusal retried after a backoff); the
others clear when their cause is gone (the market opens, the broker answers again, the operator
runs ``bot baseline``). Times are timezone-aware datetimes: the caller passes ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

ALL = "*"


class Reason(StrEnum):
    PAUSED = "executions paused"
    PARKED = "parked"
    MARKET_CLOSED = "market closed"
    BROKER_UNREACHABLE = "broker unreachable"
    BROKER_UNVERIFIED = "broker account not verified yet"
    ACCOUNT_BLOCKED = "account blocked"
    KEYS_REFUSED = "broker keys refused"
    ACCOUNT_REFUSED = "account-wide refusal"
    REJECTION_BACKOFF = "rejection backoff"
    AWAITING_BASELINE = "awaiting bot baseline"


@dataclass(frozen=True, slots=True)
class Block:
    ticker: str  # or ALL
    reason: Reason
    detail: str
    since: datetime
    until: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.until is None or now < self.until


class Blocks:
    """The current blocking reasons by (ticker, reason); setting one again keeps ``since``."""

    def __init__(self) -> None:
        self._blocks: dict[tuple[str, Reason], Block] = {}

    def set(
        self,
        ticker: str,
        reason: Reason,
        detail: str,
        now: datetime,
        *,
        until: datetime | None = None,
    ) -> bool:
        """Record a reason; True when it is new (not merely refreshed)."""
        key = (ticker, reason)
        current = self._blocks.get(key)
        since = current.since if current is not None and current.active(now) else now
        self._blocks[key] = Block(ticker, reason, detail, since, until)
        return current is None or not current.active(now)

    def clear(self, ticker: str, reason: Reason) -> bool:
        """Drop a reason; True when there was one."""
        return self._blocks.pop((ticker, reason), None) is not None

    def expire(self, now: datetime) -> list[Block]:
        """Drop the reasons whose ``until`` has passed; returns them."""
        gone = [b for b in self._blocks.values() if not b.active(now)]
        for block in gone:
            del self._blocks[(block.ticker, block.reason)]
        return gone

    def has(self, ticker: str, reason: Reason) -> bool:
        return (ticker, reason) in self._blocks

    def blocking(self, ticker: str, now: datetime) -> Block | None:
        """The first active reason that blocks ``ticker`` (its own or an account-wide one)."""
        for block in self.active(now):
            if block.ticker in (ticker, ALL):
                return block
        return None

    def active(self, now: datetime) -> list[Block]:
        """Every active reason, account-wide first, then by ticker and reason."""
        found = [b for b in self._blocks.values() if b.active(now)]
        return sorted(found, key=lambda b: (b.ticker != ALL, b.ticker, b.reason.value))


def rejection_backoff(base_s: float, consecutive: int) -> timedelta:
    """The wait after the ``consecutive``-th rejection in a row: ``base_s`` doubling (SPEC §4)."""
    if consecutive < 1:
        return timedelta(0)
    return timedelta(seconds=base_s * 2 ** min(consecutive - 1, 16))
