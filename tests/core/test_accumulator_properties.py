"""Property tests of the accumulator: random fills and broker outcomes keep every invariant."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core import amounts
from bot.core.accumulator import Accumulator, Changes, Execution
from bot.core.model import Direction, ExecutionStatus, Side, Trade, TradeKind
from tests.core.persisted_state import PersistedState

TICKERS = ("AAPL", "MSFT", "TSLA")
INSTANCE = "fedcba9876543210"
ZERO = Decimal(0)


def _signed(direction: Direction, value: Decimal) -> Decimal:
    return value if direction is Direction.BUY else amounts.sub(ZERO, value)


@dataclass
class Model:
    """Independent bookkeeping of what was applied, for the position cross-check."""

    onchain: dict[str, Decimal] = field(default_factory=dict)
    hedged: dict[str, Decimal] = field(default_factory=dict)
    in_flight: dict[int, Execution] = field(default_factory=dict)
    rejections: dict[str, int] = field(default_factory=dict)
    parked: set[str] = field(default_factory=set)
    fills: list[tuple[int, Trade]] = field(default_factory=list)
    reversed_ids: set[int] = field(default_factory=set)
    next_trade_id: int = 1
    paused: bool = False


class Sim:
    """Plays the engine: each op is one event or broker answer, then hedging is re-checked."""

    def __init__(self, threshold: int, max_rejections: int) -> None:
        self.threshold = threshold
        self.max_rejections = max_rejections
        self.acc = Accumulator(
            threshold=threshold,
            max_rejections=max_rejections,
            instance_id=INSTANCE,
            next_execution_id=1,
        )
        self.store = PersistedState()
        self.model = Model()

    def clone_from_store(self) -> Sim:
        twin = Sim.__new__(Sim)
        twin.threshold = self.threshold
        twin.max_rejections = self.max_rejections
        twin.acc = self.store.load(
            instance_id=INSTANCE,
            threshold=self.threshold,
            max_rejections=self.max_rejections,
            next_id=self.acc.next_execution_id,
        )
        twin.store = PersistedState(
            dict(self.store.lots),
            dict(self.store.links),
            dict(self.store.executions),
            dict(self.store.positions),
        )
        m = self.model
        twin.model = Model(
            dict(m.onchain),
            dict(m.hedged),
            dict(m.in_flight),
            dict(m.rejections),
            set(m.parked),
            list(m.fills),
            set(m.reversed_ids),
            m.next_trade_id,
            m.paused,
        )
        return twin

    # ------------------------------------------------------------------------- operations

    def step(self, op: tuple[Any, ...]) -> list[object]:
        seen: list[object] = []
        kind = op[0]
        if kind == "fill":
            _, ticker, direction, shares = op
            self._fill(ticker, direction, shares, None)
            seen.append(self._hedge(ticker))
        elif kind == "counter":  # an opposite fill while the ticker's lots are linked
            _, ticker, shares = op
            execution = self.acc.in_flight(ticker)
            if execution is not None:
                self._fill(ticker, execution.direction, shares, None)
                seen.append(self._hedge(ticker))
        elif kind == "comp":
            candidates = [f for f in self.model.fills if f[0] not in self.model.reversed_ids]
            if candidates:
                trade_id, original = candidates[op[1] % len(candidates)]
                self.model.reversed_ids.add(trade_id)
                self._fill(original.ticker, original.direction.opposite, original.shares, trade_id)
                seen.append(self._hedge(original.ticker))
        elif kind == "outcome":
            seen.extend(self._outcome(op))
        elif kind == "unpark":
            ticker = op[1]
            self.acc.unpark(ticker)
            self.model.parked.discard(ticker)
            self.model.rejections[ticker] = 0
            seen.append(self._hedge(ticker))
        elif kind == "pause":
            self.model.paused = op[1]
            seen.extend(self._hedge(t) for t in TICKERS)
        elif kind == "drain":
            seen.extend(self.drain())
        seen.append(self._persist())
        return seen

    def drain(self) -> list[object]:
        """Resolve everything with full fills until idle, then check the idle promise."""
        self.model.paused = False
        seen: list[object] = []
        for _ in range(10):
            seen.extend(self._hedge(t) for t in TICKERS)
            pending = self.acc.in_flight_executions()
            if not pending:
                break
            for execution in pending:
                seen.extend(self._settle(execution, execution_filled(execution), rejected=False))
        assert not self.acc.in_flight_executions()
        for position in self.acc.positions():
            if not position.parked:
                assert abs(position.unhedged) < self.threshold
        return seen

    def _fill(
        self, ticker: str, direction: Direction, shares: Decimal, reverses: int | None
    ) -> None:
        trade_id = self.model.next_trade_id
        self.model.next_trade_id += 1
        the_trade = make_trade(ticker, direction, shares, trade_id, reverses)
        self.acc.apply_fill(trade_id, the_trade)
        if reverses is None:
            self.model.fills.append((trade_id, the_trade))
        self.model.onchain[ticker] = amounts.add(
            self.model.onchain.get(ticker, ZERO), _signed(direction, shares)
        )

    def _hedge(self, ticker: str) -> Execution | None:
        execution = self.acc.maybe_hedge(ticker, blocked=self.model.paused)
        if execution is not None:
            assert execution.id not in self.model.in_flight
            assert all(e.ticker != ticker for e in self.model.in_flight.values())
            self.model.in_flight[execution.id] = execution
        return execution

    def _outcome(self, op: tuple[Any, ...]) -> list[object]:
        _, ticker, outcome, units, places = op
        execution = self.acc.in_flight(ticker)
        if execution is None:
            pending = self.acc.in_flight_executions()
            if not pending:
                return []
            execution = pending[units % len(pending)]
        if outcome == "submit":
            self.acc.mark_submitted(execution.id, f"dry-{execution.client_order_id}")
            return [self.acc.in_flight(execution.ticker)]
        if outcome == "full":
            return self._settle(execution, execution_filled(execution), rejected=False)
        if outcome == "partial":
            span = int(execution.shares.scaleb(places)) - 1  # base units, exact
            if span <= 0:
                places, span = 18, int(execution.shares.scaleb(18)) - 1
            filled = amounts.from_base_units(1 + units % span, places)
            return self._settle(execution, filled, rejected=False)
        return self._settle(execution, ZERO, rejected=outcome == "reject")

    def _settle(self, execution: Execution, filled: Decimal, *, rejected: bool) -> list[object]:
        price = self.acc.reference_price(execution.id)
        done = self.acc.settle(
            execution.id,
            filled=filled,
            avg_price=price if filled else None,
            rejected=rejected,
            reason=None if filled == execution.shares else "canceled",
        )
        expected = ExecutionStatus.FILLED if filled > 0 else ExecutionStatus.FAILED
        assert (done.status, done.filled_shares) == (expected, filled)
        m = self.model
        del m.in_flight[execution.id]
        m.hedged[execution.ticker] = amounts.add(
            m.hedged.get(execution.ticker, ZERO), _signed(execution.direction, filled)
        )
        if filled > 0:
            m.rejections[execution.ticker] = 0
        elif rejected:
            m.rejections[execution.ticker] = m.rejections.get(execution.ticker, 0) + 1
            if m.rejections[execution.ticker] >= self.max_rejections:
                m.parked.add(execution.ticker)
        return [done, price, self._hedge(execution.ticker)]

    def _persist(self) -> Changes:
        changes = self.acc.take_changes()
        self.store.apply(changes)
        return changes

    # ------------------------------------------------------------------------- invariants

    def check(self) -> None:
        self.acc.check_invariants()
        rebuilt = self.clone_from_store().acc  # the store alone rebuilds the same state
        assert rebuilt.positions() == self.acc.positions()
        assert rebuilt.in_flight_executions() == self.acc.in_flight_executions()
        for execution in self.acc.in_flight_executions():
            assert rebuilt.links(execution.id) == self.acc.links(execution.id)
        for ticker in TICKERS:
            assert rebuilt.lots(ticker) == self.acc.lots(ticker)
        store, model = self.store, self.model
        link_sums: dict[int, Decimal] = {}
        lot_links: dict[int, Decimal] = {}
        for link in store.links.values():
            assert link.shares >= 0
            link_sums[link.execution_id] = amounts.add(
                link_sums.get(link.execution_id, ZERO), link.shares
            )
            lot_links[link.lot_id] = amounts.add(lot_links.get(link.lot_id, ZERO), link.shares)
        for execution in store.executions.values():
            total = link_sums.get(execution.id, ZERO)
            if execution.status.in_flight:
                assert total == execution.shares
                assert execution.id in model.in_flight
            elif execution.status is ExecutionStatus.FILLED:
                assert total == execution.filled_shares > 0
            else:
                assert total == 0 == execution.filled_shares
        assert sorted(model.in_flight) == [e.id for e in self.acc.in_flight_executions()]

        open_sum: dict[str, Decimal] = {}
        size_less_closed: dict[str, Decimal] = {}
        linked_sum: dict[str, Decimal] = {}
        for lot in store.lots.values():
            assert lot.size > 0 and lot.closed >= 0
            assert lot.linked == lot_links.get(lot.trade_id, ZERO)
            assert 0 <= lot.open <= lot.size
            t, d = lot.ticker, lot.direction
            open_sum[t] = amounts.add(open_sum.get(t, ZERO), _signed(d, lot.open))
            size_less_closed[t] = amounts.add(
                size_less_closed.get(t, ZERO), _signed(d, amounts.sub(lot.size, lot.closed))
            )
            linked_sum[t] = amounts.add(linked_sum.get(t, ZERO), _signed(d, lot.linked))

        assert store.positions == {p.ticker: p for p in self.acc.positions()}
        for ticker, position in store.positions.items():
            in_flight = amounts.total(
                [
                    _signed(e.direction, Decimal(e.shares))
                    for e in model.in_flight.values()
                    if e.ticker == ticker
                ]
            )
            assert position.onchain_net == model.onchain.get(ticker, ZERO)
            assert position.hedged == model.hedged.get(ticker, ZERO)
            assert position.in_flight == in_flight
            assert position.parked is (ticker in model.parked)
            assert position.consecutive_rejections == model.rejections.get(ticker, 0)
            assert open_sum.get(ticker, ZERO) == position.unhedged
            assert size_less_closed.get(ticker, ZERO) == position.onchain_net
            assert linked_sum.get(ticker, ZERO) == amounts.sub(
                ZERO, amounts.add(position.hedged, position.in_flight)
            )


def execution_filled(execution: Execution) -> Decimal:
    return Decimal(execution.shares)


def make_trade(
    ticker: str, direction: Direction, shares: Decimal, trade_id: int, reverses: int | None
) -> Trade:
    price = Decimal(100 + trade_id)
    return Trade(
        tx_hash="0x" + f"{trade_id:064x}",
        log_index=0,
        side=Side.TAKE,
        inclusion=0,
        kind=TradeKind.FILL if reverses is None else TradeKind.COMPENSATION,
        block_number=trade_id,
        block_hash="0x" + "cd" * 32,
        ticker=ticker,
        shares=shares,
        direction=direction,
        price_usdc=price,
        usdc_amount=amounts.EXACT.multiply(shares, price),
        equity_token="0x" + "11" * 20,
        stable_token="0x" + "22" * 20,
        reverses_trade_id=reverses,
    )


# ----------------------------------------------------------------------------- strategies

_places = st.integers(min_value=0, max_value=18)


@st.composite
def _amount(draw: st.DrawFn) -> Decimal:
    places = draw(st.sampled_from([1, 1, 2, 18, 18, draw(_places)]))
    scale = 10**places
    top = draw(st.sampled_from([2 * scale, 2 * scale, 4 * scale, 10**6 * scale]))
    return amounts.from_base_units(draw(st.integers(min_value=1, max_value=top)), places)


_KINDS = (
    ["fill"] * 10
    + ["full"] * 3
    + ["partial"] * 3
    + ["reject"] * 2
    + ["counter"] * 2
    + ["zero", "submit", "comp", "unpark", "pause", "drain"]
)


@st.composite
def _op(draw: st.DrawFn, tickers: tuple[str, ...]) -> tuple[Any, ...]:
    kind = draw(st.sampled_from(_KINDS))
    ticker = draw(st.sampled_from(tickers))
    if kind == "fill":
        return ("fill", ticker, draw(st.sampled_from(list(Direction))), draw(_amount()))
    if kind == "counter":
        return ("counter", ticker, draw(_amount()))
    if kind == "comp":
        return ("comp", draw(st.integers(min_value=0, max_value=100)))
    if kind == "unpark":
        return ("unpark", ticker)
    if kind == "pause":
        return ("pause", draw(st.booleans()))
    if kind == "drain":
        return ("drain",)
    units = draw(st.integers(min_value=0, max_value=10**40))
    return ("outcome", ticker, kind, units, draw(st.sampled_from([1, 2, 18, 18])))


@st.composite
def _scenario(draw: st.DrawFn) -> tuple[int, int, list[tuple[Any, ...]], int]:
    threshold = draw(st.integers(min_value=1, max_value=3))
    max_rejections = draw(st.integers(min_value=1, max_value=3))
    tickers = TICKERS[: draw(st.integers(min_value=1, max_value=len(TICKERS)))]
    ops = draw(st.lists(_op(tickers), min_size=10, max_size=60))
    cut = draw(st.integers(min_value=0, max_value=len(ops)))
    return threshold, max_rejections, ops, cut


@settings(max_examples=200, deadline=None)
@given(_scenario())
def test_random_sequences_keep_every_invariant(
    scenario: tuple[int, int, list[tuple[Any, ...]], int],
) -> None:
    threshold, max_rejections, ops, cut = scenario
    sim = Sim(threshold, max_rejections)
    transcript: list[list[object]] = []
    for op in ops[:cut]:
        transcript.append(sim.step(op))
        sim.check()

    rebuilt = sim.clone_from_store()
    rebuilt.check()
    for op in ops[cut:]:
        seen = sim.step(op)
        sim.check()
        assert rebuilt.step(op) == seen  # a restart continues exactly like the original
        rebuilt.check()
        transcript.append(seen)
    transcript.append(sim.step(("drain",)))
    sim.check()
    assert rebuilt.step(("drain",)) == transcript[-1]

    replay = Sim(threshold, max_rejections)
    replayed = [replay.step(op) for op in [*ops, ("drain",)]]
    assert repr(replayed) == repr(transcript)  # deterministic, down to each Decimal's exponent
