"""Domain types shared by the pure core, the store and the engine.

Everything here is plain data: frozen dataclasses with exact ``Decimal`` amounts and
checksummed ``0x`` hex strings for addresses and hashes.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from bot.core.amounts import EXACT


class Side(StrEnum):
    """Which order of the event is ours: alice or bob of a clear, or the order of a take."""

    ALICE = "alice"
    BOB = "bob"
    TAKE = "take"


class Direction(StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        return 1 if self is Direction.BUY else -1

    @property
    def opposite(self) -> Direction:
        return Direction.SELL if self is Direction.BUY else Direction.BUY


class TradeKind(StrEnum):
    FILL = "fill"
    COMPENSATION = "compensation"


class EventStatus(StrEnum):
    PENDING = "pending"
    PROCESSED = "processed"
    REMOVED = "removed"
    FAILED = "failed"
    SKIPPED = "skipped"


class ExecutionStatus(StrEnum):
    PENDING = "PENDING"
    SUBMITTED = "SUBMITTED"
    FILLED = "FILLED"
    FAILED = "FAILED"

    @property
    def in_flight(self) -> bool:
        return self in (ExecutionStatus.PENDING, ExecutionStatus.SUBMITTED)


@dataclass(frozen=True, slots=True)
class RawLog:
    """One orderbook log as stored in the queue (undecoded: decoding is the drain's job)."""

    block_number: int
    block_hash: str
    tx_hash: str
    tx_index: int
    log_index: int
    address: str
    topic0: str
    data: bytes
    removed: bool = False


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """ERC-20 metadata read once from the chain and cached in the database."""

    address: str
    symbol: str
    decimals: int


@dataclass(frozen=True, slots=True)
class Trade:
    """One of our fills (or the compensation of one), as SPEC §3 defines it.

    ``shares`` is always positive; ``direction`` is our order's on-chain side.
    """

    tx_hash: str
    log_index: int
    side: Side
    inclusion: int
    kind: TradeKind
    block_number: int
    block_hash: str
    ticker: str
    shares: Decimal
    direction: Direction
    price_usdc: Decimal
    usdc_amount: Decimal
    equity_token: str
    stable_token: str
    reverses_trade_id: int | None = None

    @property
    def signed_shares(self) -> Decimal:
        # EXACT.minus: unary minus on a Decimal rounds to the ambient 28-digit context
        return self.shares if self.direction is Direction.BUY else EXACT.minus(self.shares)


@dataclass(frozen=True, slots=True)
class SkippedFill:
    """One of our orders was involved, but the pair is not a trade (SPEC §3: record the reason)."""

    tx_hash: str
    log_index: int
    side: Side
    reason: str
