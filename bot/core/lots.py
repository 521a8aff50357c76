"""Plain data of the accumulator (SPEC §4, §5): lots, links, executions, positions, changes.

Amounts are exact ``Decimal`` values combined only through :mod:`bot.core.amounts`: unary minus,
``abs()`` and ``sum()`` on ``Decimal`` round to the *current* context (28 digits by default),
which silently corrupts 18-decimal amounts of large positions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from bot.core import amounts
from bot.core.amounts import ZERO
from bot.core.model import Direction, ExecutionStatus

MAX_CLIENT_ORDER_ID_LENGTH = 48
_INSTANCE_ID = re.compile(r"[0-9a-f]{16}")


def client_order_id(instance_id: str, execution_id: int) -> str:
    """The broker's idempotency key: ``bot-<instance_id>-<execution_id>`` (48 characters at most).

    ``instance_id`` is the 16 lowercase hex characters written when the database was created, so
    a new database never reuses a key. Raises ``ValueError`` on a malformed instance id, a
    negative id or a result longer than 48 characters.
    """
    if not isinstance(instance_id, str) or not _INSTANCE_ID.fullmatch(instance_id):
        raise ValueError(f"instance id must be 16 lowercase hex characters, got {instance_id!r}")
    if isinstance(execution_id, bool) or not isinstance(execution_id, int) or execution_id < 0:
        raise ValueError(f"execution id must be a non-negative integer, got {execution_id!r}")
    result = f"bot-{instance_id}-{execution_id}"
    if len(result) > MAX_CLIENT_ORDER_ID_LENGTH:
        raise ValueError(f"client order id {result!r} exceeds {MAX_CLIENT_ORDER_ID_LENGTH} chars")
    return result


def signed(direction: Direction, quantity: Decimal) -> Decimal:
    """``quantity`` with the sign of ``direction`` (BUY +, SELL -), exactly."""
    return quantity if direction is Direction.BUY else amounts.sub(ZERO, quantity)


@dataclass(slots=True)
class Lot:
    """Quantity opened by one fill (lot id == trade id), net of what earlier fills closed."""

    trade_id: int
    ticker: str
    direction: Direction
    size: Decimal
    price_usdc: Decimal
    closed: Decimal = ZERO
    linked: Decimal = ZERO

    @property
    def open(self) -> Decimal:
        """Neither closed by an opposite fill nor linked to an execution (never negative)."""
        return amounts.sub(amounts.sub(self.size, self.closed), self.linked)

    @property
    def signed_open(self) -> Decimal:
        return signed(self.direction, self.open)


@dataclass(slots=True)
class Link:
    """Shares of one lot hedged by one execution; ``seq`` orders trimming (newest first)."""

    execution_id: int
    lot_id: int
    shares: Decimal
    seq: int


@dataclass(slots=True)
class Execution:
    """One broker order (whole shares unless fractional, SPEC §4); ``direction`` is the broker side.

    ``kind`` is ``hedge`` (an order) or ``baseline`` (an earlier hedge found at the broker).
    """

    id: int
    ticker: str
    direction: Direction
    shares: Decimal
    client_order_id: str
    status: ExecutionStatus = ExecutionStatus.PENDING
    broker_order_id: str | None = None
    filled_shares: Decimal = ZERO
    avg_price: Decimal | None = None
    reason: str | None = None
    kind: str = "hedge"
    created_at: datetime | None = None
    unknown_since: datetime | None = None  # first attempt whose outcome was unknown (SPEC §5)
    not_found_since: datetime | None = None  # lookups answer "not found" since then


@dataclass(slots=True)
class Position:
    """Per-ticker totals, all signed (BUY +, SELL -)."""

    ticker: str
    onchain_net: Decimal = ZERO
    hedged: Decimal = ZERO
    in_flight: Decimal = ZERO
    consecutive_rejections: int = 0
    parked: bool = False

    @property
    def unhedged(self) -> Decimal:
        return amounts.add(amounts.add(self.onchain_net, self.hedged), self.in_flight)


@dataclass
class Changes:
    """Everything mutated since the last ``take_changes()``, as snapshots: upsert these rows.

    A trimmed link appears with ``shares == 0`` (persist it as 0 or delete it).
    """

    lots: dict[int, Lot] = field(default_factory=dict)
    links: dict[tuple[int, int], Link] = field(default_factory=dict)
    executions: dict[int, Execution] = field(default_factory=dict)
    positions: dict[str, Position] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not (self.lots or self.links or self.executions or self.positions)


def take_oldest(
    lots: Iterable[Lot], direction: Direction, quantity: Decimal | int
) -> tuple[list[tuple[Lot, Decimal]], Decimal]:
    """Portions of the oldest open quantity of ``direction`` covering ``quantity`` (not applied).

    ``lots`` must be sorted oldest first. Returns the portions and what they leave uncovered.
    """
    portions: list[tuple[Lot, Decimal]] = []
    remaining = Decimal(quantity)
    for lot in lots:
        if remaining == 0:
            break
        available = lot.open
        if lot.direction is not direction or available <= 0:
            continue
        portion = min(available, remaining)
        portions.append((lot, portion))
        remaining = amounts.sub(remaining, portion)
    return portions, remaining


def net_opposite_open(lots: Sequence[Lot]) -> list[Lot]:
    """Close open BUY quantity against open SELL quantity, oldest with oldest (FIFO).

    Both lots of a pair get the same ``closed`` increase, so the signed open sum is unchanged.
    Returns the lots it changed, in the order it changed them.
    """
    buys = [lot for lot in lots if lot.direction is Direction.BUY and lot.open > 0]
    sells = [lot for lot in lots if lot.direction is Direction.SELL and lot.open > 0]
    touched: list[Lot] = []
    b = s = 0
    while b < len(buys) and s < len(sells):
        buy, sell = buys[b], sells[s]
        quantity = min(buy.open, sell.open)
        buy.closed = amounts.add(buy.closed, quantity)
        sell.closed = amounts.add(sell.closed, quantity)
        touched.extend((buy, sell))
        if buy.open == 0:
            b += 1
        if sell.open == 0:
            s += 1
    return touched


def check_state(
    positions: Mapping[str, Position],
    lots_by_ticker: Mapping[str, Sequence[Lot]],
    in_flight: Mapping[int, Execution],
    links_by_execution: Mapping[int, Sequence[Link]],
    lot_index: Mapping[int, Lot],
) -> None:
    """Raise ``ValueError`` naming the first broken accumulator invariant.

    ``in_flight`` holds exactly the in-flight executions and ``links_by_execution`` their live
    links; ``lots_by_ticker`` the lots kept in memory (open > 0 or linked in flight).
    """
    in_flight_lots: dict[str, set[int]] = {}
    in_flight_signed: dict[str, Decimal] = {}
    for execution_id, execution in in_flight.items():
        if not execution.status.in_flight or execution.shares <= 0:
            raise ValueError(f"execution {execution_id} is not a valid in-flight execution")
        if execution.ticker in in_flight_signed:
            raise ValueError(f"{execution.ticker}: two executions in flight")
        links = links_by_execution[execution_id]
        linked = amounts.total([link.shares for link in links])
        if linked != execution.shares:
            raise ValueError(f"execution {execution_id}: links sum to {linked}")
        for link in links:
            lot = lot_index.get(link.lot_id)
            if lot is None or lot.ticker != execution.ticker:
                raise ValueError(f"execution {execution_id}: unknown lot {link.lot_id}")
            if lot.direction is not execution.direction.opposite or link.shares <= 0:
                raise ValueError(f"execution {execution_id}: bad link to lot {link.lot_id}")
        in_flight_lots[execution.ticker] = {link.lot_id for link in links}
        in_flight_signed[execution.ticker] = signed(execution.direction, execution.shares)
    for ticker, lots in lots_by_ticker.items():
        if lots and ticker not in positions:
            raise ValueError(f"{ticker}: lots without a position")
    for ticker, position in positions.items():
        lots = lots_by_ticker.get(ticker, ())
        for lot in lots:
            if not (lot.size > 0 and lot.closed >= 0 and lot.linked >= 0):
                raise ValueError(f"lot {lot.trade_id}: bad size, closed or linked")
            if not 0 <= lot.open <= lot.size:
                raise ValueError(f"lot {lot.trade_id}: open {lot.open} outside 0..size")
            if lot.open == 0 and lot.trade_id not in in_flight_lots.get(ticker, set()):
                raise ValueError(f"lot {lot.trade_id}: kept with nothing open")
        if {lot.direction for lot in lots if lot.open > 0} == {Direction.BUY, Direction.SELL}:
            raise ValueError(f"{ticker}: open quantity in both directions")
        open_sum = amounts.total([lot.signed_open for lot in lots])
        if open_sum != position.unhedged:
            raise ValueError(f"{ticker}: open lots {open_sum} != unhedged {position.unhedged}")
        expected = in_flight_signed.get(ticker, ZERO)
        if position.in_flight != expected:
            raise ValueError(f"{ticker}: in_flight {position.in_flight} != {expected}")
