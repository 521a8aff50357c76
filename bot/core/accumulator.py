"""The accumulator (SPEC §4, §5): lots, positions and the execution state machine. Pure.

Invariants kept after every call (``check_invariants`` verifies them):

- per ticker, ``Σ signed open lot quantity == position.unhedged`` (BUY lots +, SELL lots -);
- the links of an in-flight execution sum exactly to its shares; ``lot.linked`` is the sum of
  all that lot's untrimmed links, FILLED executions' included (only in-flight links stay in
  memory; the others are in the database);
- at most one execution in flight per ticker; every in-flight link is on a lot of the direction
  the execution hedges (broker BUY hedges SELL lots);
- every lot's open quantity is in ``[0, size]``; per ticker, open quantity exists in one
  direction at most.

The last one needs a decision. While an execution is in flight its lots are linked, so an
opposite fill may find no open quantity to close and opens a lot of its own. If the execution
then returns shares, the reopened quantity and that lot are both open. We **net them at once**
(oldest BUY against oldest SELL, FIFO, ``closed`` raised on both lots by the same amount), as the
fill would have done had the quantity not been linked. This changes no position (the signed sum is
unchanged), keeps the lots a FIFO record of the net position, and means hedging never has to
step over opposite quantity.

"Oldest" is the lowest lot id (lot id == trade id, assigned in processing order).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from copy import copy
from datetime import datetime
from decimal import Decimal

from bot.core import amounts
from bot.core.amounts import EXACT, ZERO
from bot.core.hedging import check_threshold, hedge_for
from bot.core.lots import (
    MAX_CLIENT_ORDER_ID_LENGTH,
    Changes,
    Execution,
    Link,
    Lot,
    Position,
    check_state,
    client_order_id,
    net_opposite_open,
    signed,
    take_oldest,
)
from bot.core.model import Direction, ExecutionStatus, Trade

__all__ = [
    "MAX_CLIENT_ORDER_ID_LENGTH",
    "Accumulator",
    "Changes",
    "Execution",
    "Link",
    "Lot",
    "Position",
    "client_order_id",
]


def _lot_key(lot: Lot) -> int:
    return lot.trade_id


class Accumulator:
    """In-memory state of every ticker; the engine persists ``take_changes()`` after each call.

    Returned objects are snapshots: mutating them does not touch the accumulator.
    """

    def __init__(
        self,
        *,
        threshold: Decimal | int,
        max_rejections: int,
        instance_id: str,
        next_execution_id: int,
        positions: Iterable[Position] = (),
        lots: Iterable[Lot] = (),
        executions: Iterable[Execution] = (),
        links: Iterable[Link] = (),
    ) -> None:
        """Start empty, or rebuild from persisted state: every position, every lot with open > 0
        or a link of an in-flight execution, the in-flight executions and their links.

        Raises ``ValueError`` if that state is inconsistent (see the module invariants).
        """
        self._threshold = check_threshold(threshold, fractional=True)
        if isinstance(max_rejections, bool) or not isinstance(max_rejections, int):
            raise ValueError(f"max_rejections must be an integer, got {max_rejections!r}")
        if max_rejections < 1:
            raise ValueError(f"max_rejections must be >= 1, got {max_rejections}")
        client_order_id(instance_id, next_execution_id)  # validates both
        self._max_rejections = max_rejections
        self._instance_id = instance_id
        self._next_id = next_execution_id
        self._positions: dict[str, Position] = {}
        self._lots: dict[str, list[Lot]] = {}  # kept lots per ticker, sorted by lot id
        self._lot_index: dict[int, Lot] = {}
        self._executions: dict[int, Execution] = {}  # in flight only
        self._in_flight_by_ticker: dict[str, int] = {}
        self._links: dict[int, list[Link]] = {}  # per in-flight execution, by seq
        self._dirty_lots: dict[int, Lot] = {}
        self._dirty_links: dict[tuple[int, int], Link] = {}
        self._dirty_executions: dict[int, Execution] = {}
        self._dirty_positions: dict[str, Position] = {}
        self._load(positions, lots, executions, links)

    # ----------------------------------------------------------------------------- queries

    @property
    def threshold(self) -> Decimal:
        return self._threshold

    @property
    def next_execution_id(self) -> int:
        """The id the next execution will get."""
        return self._next_id

    def position(self, ticker: str) -> Position | None:
        found = self._positions.get(ticker)
        return None if found is None else copy(found)

    def positions(self) -> list[Position]:
        """Every position, sorted by ticker."""
        return [copy(self._positions[t]) for t in sorted(self._positions)]

    def in_flight(self, ticker: str) -> Execution | None:
        """The PENDING or SUBMITTED execution of ``ticker``, if any."""
        execution_id = self._in_flight_by_ticker.get(ticker)
        return None if execution_id is None else copy(self._executions[execution_id])

    def in_flight_executions(self) -> list[Execution]:
        """Every in-flight execution, by id."""
        return [copy(self._executions[i]) for i in sorted(self._executions)]

    def lots(self, ticker: str) -> list[Lot]:
        """The lots kept in memory for ``ticker`` (open > 0 or linked in flight), oldest first."""
        return [copy(lot) for lot in self._lots.get(ticker, [])]

    def links(self, execution_id: int) -> list[Link]:
        """The links of an in-flight execution, by seq. ``KeyError`` if it is not in flight."""
        return [copy(link) for link in self._links[execution_id]]

    def reference_price(self, execution_id: int) -> Decimal:
        """Link-weighted mean ``price_usdc`` of an in-flight execution's lots.

        This is the dry-run broker's fill price. ``KeyError`` if the execution is not in flight.
        """
        numerator = ZERO
        denominator = ZERO
        for link in self._links[execution_id]:
            lot = self._lot_index[link.lot_id]
            numerator = amounts.add(numerator, EXACT.multiply(link.shares, lot.price_usdc))
            denominator = amounts.add(denominator, link.shares)
        return amounts.price(numerator, denominator)

    # ----------------------------------------------------------------------------- commands

    def apply_fill(self, trade_id: int, trade: Trade) -> None:
        """Book one of our fills (or a compensation, which carries the reversing direction).

        It closes the oldest open quantity of the opposite direction first; the rest opens
        ``Lot(trade_id, ...)``.
        """
        if not trade.shares.is_finite() or trade.shares <= 0:
            raise ValueError(f"trade {trade_id}: shares must be > 0, got {trade.shares}")
        if trade_id in self._lot_index:
            raise ValueError(f"trade {trade_id} already opened a lot")
        position = self._position_for(trade.ticker)
        # open quantity lies in one direction only and sums to the unhedged position, so the
        # unhedged sign tells whether there is any to close: a backlog of fills in one
        # direction then costs O(1) per fill, not a scan of every open lot
        unhedged = position.unhedged
        against = unhedged < 0 if trade.direction is Direction.BUY else unhedged > 0
        position.onchain_net = amounts.add(
            position.onchain_net, signed(trade.direction, trade.shares)
        )
        self._dirty_positions[trade.ticker] = position
        portions: list[tuple[Lot, Decimal]] = []
        remaining = trade.shares
        if against:
            portions, remaining = take_oldest(
                self._lots.get(trade.ticker, []), trade.direction.opposite, trade.shares
            )
        for lot, quantity in portions:
            lot.closed = amounts.add(lot.closed, quantity)
            self._dirty_lots[lot.trade_id] = lot
        if remaining > 0:
            lot = Lot(trade_id, trade.ticker, trade.direction, remaining, trade.price_usdc)
            self._insert_lot(lot)
            self._dirty_lots[trade_id] = lot
        self._forget_closed(trade.ticker, [lot for lot, _quantity in portions])

    def maybe_hedge(
        self,
        ticker: str,
        *,
        blocked: bool = False,
        fractional: bool = False,
        broker_long: Decimal = ZERO,
        now: datetime | None = None,
    ) -> Execution | None:
        """Create the ticker's next PENDING execution if SPEC §4 asks for one, else ``None``.

        Needs: no blocking reason (``blocked``), not parked, nothing in flight for the ticker,
        ``|unhedged|`` at the effective threshold (:func:`bot.core.hedging.hedge_for`). The
        execution is linked to the oldest open quantity of the hedged direction.
        """
        position = self._positions.get(ticker)
        if position is None or blocked or position.parked or ticker in self._in_flight_by_ticker:
            return None
        hedge = hedge_for(
            position.unhedged, self._threshold, fractional=fractional, broker_long=broker_long
        )
        if hedge is None:
            return None
        shares, direction = hedge.shares, hedge.direction
        plan, uncovered = take_oldest(self._lots.get(ticker, []), direction.opposite, shares)
        if uncovered != 0:  # impossible while Σ signed open == unhedged holds
            raise RuntimeError(f"{ticker}: open lots do not cover {shares} shares")
        execution = Execution(
            id=self._next_id,
            ticker=ticker,
            direction=direction,
            shares=shares,
            client_order_id=client_order_id(self._instance_id, self._next_id),
            created_at=now,
        )
        self._next_id += 1
        links: list[Link] = []
        for seq, (lot, quantity) in enumerate(plan):
            lot.linked = amounts.add(lot.linked, quantity)
            link = Link(execution.id, lot.trade_id, quantity, seq)
            links.append(link)
            self._dirty_lots[lot.trade_id] = lot
            self._dirty_links[(execution.id, lot.trade_id)] = link
        self._executions[execution.id] = execution
        self._links[execution.id] = links
        self._in_flight_by_ticker[ticker] = execution.id
        position.in_flight = amounts.add(position.in_flight, signed(direction, shares))
        self._dirty_executions[execution.id] = execution
        self._dirty_positions[ticker] = position
        return copy(execution)

    def book_baseline(
        self, ticker: str, broker_quantity: Decimal, *, now: datetime | None = None
    ) -> Execution:
        """Book a position found at the broker as this bot's earlier hedge (``bot baseline
        --as-hedged``): a FILLED execution of kind ``baseline``, no order, linked to the oldest
        open quantity it hedges. ``ValueError`` if that quantity does not cover it (book the
        history first) or an execution is in flight for the ticker."""
        if broker_quantity == 0:
            raise ValueError(f"{ticker}: a baseline of 0 shares books nothing")
        if ticker in self._in_flight_by_ticker:
            raise ValueError(f"{ticker}: an execution is in flight; try again when it ended")
        direction = Direction.BUY if broker_quantity > 0 else Direction.SELL
        shares = EXACT.abs(broker_quantity)
        position = self._position_for(ticker)
        plan, uncovered = take_oldest(self._lots.get(ticker, []), direction.opposite, shares)
        if uncovered != 0:
            raise ValueError(
                f"the broker's {broker_quantity} {ticker} exceeds the open on-chain quantity "
                f"by {uncovered}: let the backfill book the history first, or use --as-outside"
            )
        execution = Execution(
            id=self._next_id,
            ticker=ticker,
            direction=direction,
            shares=shares,
            client_order_id=f"baseline-{self._instance_id}-{self._next_id}",
            status=ExecutionStatus.FILLED,
            filled_shares=shares,
            reason="baseline: the broker's position booked as this bot's earlier hedge",
            kind="baseline",
            created_at=now,
        )
        self._next_id += 1
        for seq, (lot, quantity) in enumerate(plan):
            lot.linked = amounts.add(lot.linked, quantity)
            self._dirty_lots[lot.trade_id] = lot
            self._dirty_links[(execution.id, lot.trade_id)] = Link(
                execution.id, lot.trade_id, quantity, seq
            )
        position.hedged = amounts.add(position.hedged, signed(direction, shares))
        self._dirty_positions[ticker] = position
        self._dirty_executions[execution.id] = execution
        self._prune(ticker)
        return copy(execution)

    def mark_submitted(self, execution_id: int, broker_order_id: str) -> None:
        """PENDING → SUBMITTED with the broker's order id (idempotent for the same id)."""
        execution = self._executions.get(execution_id)
        if execution is None:
            raise KeyError(f"execution {execution_id} is not in flight")
        if execution.status is ExecutionStatus.SUBMITTED:
            if execution.broker_order_id == broker_order_id:
                return
            raise ValueError(
                f"execution {execution_id} already submitted as {execution.broker_order_id!r}"
            )
        execution.status = ExecutionStatus.SUBMITTED
        execution.broker_order_id = broker_order_id
        self._dirty_executions[execution_id] = execution

    def note_lookup(
        self,
        execution_id: int,
        *,
        unknown_at: datetime | None = None,
        not_found_at: datetime | None = None,
        found: bool = False,
    ) -> None:
        """Record what an attempt taught about an in-flight execution (SPEC §5's clocks).

        ``unknown_at``: an attempt's outcome was unknown (kept from the first such attempt on);
        ``not_found_at``: a lookup said "not found" (kept from the first of a run of them);
        ``found``: the broker knows the order, which ends a run of "not found".
        """
        execution = self._executions.get(execution_id)
        if execution is None:
            raise KeyError(f"execution {execution_id} is not in flight")
        before = (execution.unknown_since, execution.not_found_since)
        if unknown_at is not None and execution.unknown_since is None:
            execution.unknown_since = unknown_at
        if found:
            execution.not_found_since = None
        elif not_found_at is not None and execution.not_found_since is None:
            execution.not_found_since = not_found_at
        if (execution.unknown_since, execution.not_found_since) != before:
            self._dirty_executions[execution_id] = execution

    def follow_replacement(self, execution_id: int, broker_order_id: str) -> None:
        """A SUBMITTED order was replaced (``replaced_by``): follow the new broker id."""
        execution = self._executions.get(execution_id)
        if execution is None or execution.status is not ExecutionStatus.SUBMITTED:
            raise KeyError(f"execution {execution_id} is not submitted and in flight")
        execution.broker_order_id = broker_order_id
        self._dirty_executions[execution_id] = execution

    def settle(
        self,
        execution_id: int,
        *,
        filled: Decimal,
        avg_price: Decimal | None,
        rejected: bool = False,
        reason: str | None = None,
    ) -> Execution:
        """End an in-flight execution: FILLED if ``filled > 0`` else FAILED.

        ``shares - filled`` returns: links are trimmed newest-first to ``filled`` and the trimmed
        quantity reopens (netted against opposite open quantity, see the module docstring).
        ``rejected`` counts towards parking only when nothing filled; any fill resets the count.
        Raises ``ValueError`` unless ``0 <= filled <= shares``, ``KeyError`` if not in flight.
        The caller re-checks the ticker with ``maybe_hedge`` right after.
        """
        execution = self._executions.get(execution_id)
        if execution is None:
            raise KeyError(f"execution {execution_id} is not in flight")
        if not isinstance(filled, Decimal) or not filled.is_finite():
            raise ValueError(f"execution {execution_id}: filled must be a finite Decimal")
        if filled < 0 or filled > execution.shares:
            raise ValueError(
                f"execution {execution_id}: filled {filled} outside 0..{execution.shares}"
            )
        ticker = execution.ticker
        to_trim = amounts.sub(execution.shares, filled)
        for link in reversed(self._links[execution_id]):
            if to_trim == 0:
                break
            trimmed = min(link.shares, to_trim)
            lot = self._lot_index[link.lot_id]
            link.shares = amounts.sub(link.shares, trimmed)
            lot.linked = amounts.sub(lot.linked, trimmed)
            to_trim = amounts.sub(to_trim, trimmed)
            self._dirty_links[(execution_id, link.lot_id)] = link
            self._dirty_lots[lot.trade_id] = lot
        execution.status = ExecutionStatus.FILLED if filled > 0 else ExecutionStatus.FAILED
        execution.filled_shares = filled
        execution.avg_price = avg_price
        execution.reason = reason
        self._dirty_executions[execution_id] = execution

        position = self._positions[ticker]
        position.in_flight = amounts.sub(
            position.in_flight, signed(execution.direction, execution.shares)
        )
        position.hedged = amounts.add(position.hedged, signed(execution.direction, filled))
        if filled > 0:
            position.consecutive_rejections = 0
        elif rejected:
            position.consecutive_rejections += 1
            if position.consecutive_rejections >= self._max_rejections:
                position.parked = True
        self._dirty_positions[ticker] = position

        del self._executions[execution_id]
        del self._links[execution_id]
        del self._in_flight_by_ticker[ticker]
        for lot in net_opposite_open(self._lots.get(ticker, [])):
            self._dirty_lots[lot.trade_id] = lot
        self._prune(ticker)
        return copy(execution)

    def unpark(self, ticker: str) -> None:
        """Allow orders for ``ticker`` again (the caller re-checks it with ``maybe_hedge``)."""
        position = self._positions.get(ticker)
        if position is None:
            return
        position.parked = False
        position.consecutive_rejections = 0
        self._dirty_positions[ticker] = position

    def take_changes(self) -> Changes:
        """Snapshots of every lot, link, execution and position mutated since the last call."""
        changes = Changes(
            lots={k: copy(v) for k, v in self._dirty_lots.items()},
            links={k: copy(v) for k, v in self._dirty_links.items()},
            executions={k: copy(v) for k, v in self._dirty_executions.items()},
            positions={k: copy(v) for k, v in self._dirty_positions.items()},
        )
        self._dirty_lots = {}
        self._dirty_links = {}
        self._dirty_executions = {}
        self._dirty_positions = {}
        return changes

    def check_invariants(self) -> None:
        """Raise ``ValueError`` naming the first broken invariant (see the module docstring)."""
        check_state(self._positions, self._lots, self._executions, self._links, self._lot_index)

    # ----------------------------------------------------------------------------- internals

    def _position_for(self, ticker: str) -> Position:
        position = self._positions.get(ticker)
        if position is None:
            position = Position(ticker)
            self._positions[ticker] = position
        return position

    def _insert_lot(self, lot: Lot) -> None:
        bisect.insort(self._lots.setdefault(lot.ticker, []), lot, key=_lot_key)
        self._lot_index[lot.trade_id] = lot

    def _linked_in_flight(self, ticker: str) -> set[int]:
        """Ids of the lots the ticker's in-flight execution is linked to (kept even if closed)."""
        execution_id = self._in_flight_by_ticker.get(ticker)
        return set() if execution_id is None else {x.lot_id for x in self._links[execution_id]}

    def _forget_closed(self, ticker: str, touched: list[Lot]) -> None:
        """:meth:`_prune` for a fill: only the lots it closed can have nothing open now."""
        keep_ids = self._linked_in_flight(ticker)
        dead = {lot.trade_id for lot in touched if lot.open <= 0 and lot.trade_id not in keep_ids}
        if not dead:
            return
        lots = self._lots[ticker]
        # a fill closes the oldest lots: they sit at the front, so the scan stops early
        positions: list[int] = []
        for position, lot in enumerate(lots):
            if lot.trade_id in dead:
                positions.append(position)
                if len(positions) == len(dead):
                    break
        for position in reversed(positions):
            del self._lot_index[lots[position].trade_id]
            del lots[position]

    def _prune(self, ticker: str) -> None:
        """Forget lots with nothing open and no in-flight link (they stay in the database)."""
        keep_ids = self._linked_in_flight(ticker)
        lots = self._lots.get(ticker)
        if not lots:
            return
        kept = [lot for lot in lots if lot.open > 0 or lot.trade_id in keep_ids]
        if len(kept) != len(lots):
            for lot in lots:
                if lot.open <= 0 and lot.trade_id not in keep_ids:
                    del self._lot_index[lot.trade_id]
            self._lots[ticker] = kept

    def _load(
        self,
        positions: Iterable[Position],
        lots: Iterable[Lot],
        executions: Iterable[Execution],
        links: Iterable[Link],
    ) -> None:
        for position in positions:
            if position.ticker in self._positions:
                raise ValueError(f"duplicate position {position.ticker}")
            self._positions[position.ticker] = copy(position)
        for lot in lots:
            if lot.trade_id in self._lot_index:
                raise ValueError(f"duplicate lot {lot.trade_id}")
            if lot.ticker not in self._positions:
                raise ValueError(f"lot {lot.trade_id}: no position for {lot.ticker}")
            self._insert_lot(copy(lot))
        for execution in executions:
            if not execution.status.in_flight:
                raise ValueError(f"execution {execution.id} is {execution.status}, not in flight")
            if execution.id in self._executions or execution.ticker in self._in_flight_by_ticker:
                raise ValueError(f"execution {execution.id}: duplicate id or ticker in flight")
            if execution.ticker not in self._positions:
                raise ValueError(f"execution {execution.id}: no position for {execution.ticker}")
            if execution.id >= self._next_id:
                raise ValueError(f"execution {execution.id} >= next id {self._next_id}")
            self._executions[execution.id] = copy(execution)
            self._in_flight_by_ticker[execution.ticker] = execution.id
            self._links[execution.id] = []
        per_lot = dict.fromkeys(self._lot_index, ZERO)
        for link in links:
            if link.execution_id not in self._links:
                raise ValueError(f"link {link}: execution not in flight")
            if link.lot_id not in self._lot_index:
                raise ValueError(f"link {link}: lot not given")
            if link.shares < 0:
                raise ValueError(f"link {link}: negative shares")
            if link.shares > 0:  # trimmed links are history, not live
                self._links[link.execution_id].append(copy(link))
                per_lot[link.lot_id] = amounts.add(per_lot[link.lot_id], link.shares)
        for execution_links in self._links.values():
            execution_links.sort(key=lambda x: x.seq)
        for lot_id, in_flight_linked in per_lot.items():
            if self._lot_index[lot_id].linked < in_flight_linked:
                raise ValueError(f"lot {lot_id}: linked below its in-flight links")
        for ticker in list(self._lots):
            self._prune(ticker)
        self.check_invariants()
