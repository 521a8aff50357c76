"""Unit tests of the pure accumulator (SPEC §4, §5)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bot.core.accumulator import (
    Accumulator,
    Changes,
    Execution,
    Link,
    Lot,
    Position,
    client_order_id,
)
from bot.core.model import Direction, ExecutionStatus, Side, Trade, TradeKind
from tests.core.persisted_state import PersistedState

D = Decimal
BUY = Direction.BUY
SELL = Direction.SELL
INSTANCE = "0123456789abcdef"


def trade(
    direction: Direction,
    shares: str,
    *,
    ticker: str = "AAPL",
    price: str = "100",
    kind: TradeKind = TradeKind.FILL,
    reverses: int | None = None,
) -> Trade:
    return Trade(
        tx_hash="0x" + "ab" * 32,
        log_index=0,
        side=Side.TAKE,
        inclusion=0,
        kind=kind,
        block_number=1,
        block_hash="0x" + "cd" * 32,
        ticker=ticker,
        shares=D(shares),
        direction=direction,
        price_usdc=D(price),
        usdc_amount=D(shares) * D(price),
        equity_token="0x" + "11" * 20,
        stable_token="0x" + "22" * 20,
        reverses_trade_id=reverses,
    )


def dec(*values: str | int) -> tuple[Decimal, ...]:
    return tuple(D(v) for v in values)


def make(threshold: int = 1, max_rejections: int = 3, next_id: int = 1) -> Accumulator:
    return Accumulator(
        threshold=threshold,
        max_rejections=max_rejections,
        instance_id=INSTANCE,
        next_execution_id=next_id,
    )


def link_map(acc: Accumulator, execution_id: int) -> dict[int, Decimal]:
    return {link.lot_id: link.shares for link in acc.links(execution_id)}


def open_map(acc: Accumulator, ticker: str = "AAPL") -> dict[int, Decimal]:
    return {lot.trade_id: lot.open for lot in acc.lots(ticker) if lot.open > 0}


# ----------------------------------------------------------------------------- SPEC examples


def test_worked_example_three_sells_make_one_buy_of_one() -> None:
    acc = make()
    for trade_id, shares in ((1, "0.3"), (2, "0.5"), (3, "0.4")):
        acc.apply_fill(trade_id, trade(SELL, shares))
        execution = acc.maybe_hedge("AAPL")
        if trade_id < 3:
            assert execution is None
    assert execution is not None
    assert (execution.id, execution.direction, execution.shares) == (1, BUY, 1)
    assert execution.status is ExecutionStatus.PENDING
    assert execution.client_order_id == f"bot-{INSTANCE}-1"
    assert [(k.lot_id, k.shares, k.seq) for k in acc.links(1)] == [
        (1, D("0.3"), 0),
        (2, D("0.5"), 1),
        (3, D("0.2"), 2),
    ]
    position = acc.position("AAPL")
    assert position is not None
    assert (position.onchain_net, position.hedged, position.in_flight) == dec("-1.2", 0, 1)
    assert position.unhedged == D("-0.2")
    assert open_map(acc) == {3: D("0.2")}
    assert acc.maybe_hedge("AAPL") is None  # in flight

    done = acc.settle(1, filled=D(1), avg_price=D("100"))
    assert (done.status, done.filled_shares, done.avg_price) == (
        ExecutionStatus.FILLED,
        D(1),
        D(100),
    )
    position = acc.position("AAPL")
    assert position is not None
    assert (position.hedged, position.in_flight, position.unhedged) == dec(1, 0, "-0.2")
    assert acc.maybe_hedge("AAPL") is None
    assert open_map(acc) == {3: D("0.2")}
    acc.check_invariants()


def test_netting_example_links_oldest_open_lots() -> None:
    acc = make()
    fills = ((1, SELL, "0.3"), (2, BUY, "0.2"), (3, SELL, "0.5"), (4, SELL, "0.4"))
    executions = []
    for trade_id, direction, shares in fills:
        acc.apply_fill(trade_id, trade(direction, shares))
        executions.append(acc.maybe_hedge("AAPL"))
    assert executions[:3] == [None, None, None]
    execution = executions[3]
    assert execution is not None
    assert (execution.direction, execution.shares) == (BUY, 1)
    # the BUY 0.2 closed 0.2 of lot 1 and opened nothing
    assert link_map(acc, execution.id) == {1: D("0.1"), 3: D("0.5"), 4: D("0.4")}
    lots = {x.trade_id: x for x in acc.lots("AAPL")}
    assert set(lots) == {1, 3, 4}
    assert (lots[1].size, lots[1].closed, lots[1].linked) == (D("0.3"), D("0.2"), D("0.1"))
    position = acc.position("AAPL")
    assert position is not None
    assert (position.onchain_net, position.unhedged) == dec("-1.0", 0)
    acc.check_invariants()


@pytest.mark.parametrize(
    ("threshold", "sells", "hedge_at", "shares"),
    [
        (2, ["0.9", "0.9", "0.3"], 2, 2),  # -1.8 is below 2, -2.1 hedges 2
        (3, ["1.5", "1.4", "0.7"], 2, 3),  # -2.9 is below 3, -3.6 hedges 3
        (2, ["1", "1"], 1, 2),  # exactly the threshold
    ],
)
def test_threshold_above_one(threshold: int, sells: list[str], hedge_at: int, shares: int) -> None:
    acc = make(threshold=threshold)
    for index, amount in enumerate(sells):
        acc.apply_fill(index + 1, trade(SELL, amount))
        execution = acc.maybe_hedge("AAPL")
        if index < hedge_at:
            assert execution is None
        else:
            assert execution is not None
            assert (execution.direction, execution.shares) == (BUY, shares)
    acc.check_invariants()


def test_threshold_two_leaves_one_and_a_bit_unhedged_after_fill() -> None:
    acc = make(threshold=2)
    acc.apply_fill(1, trade(BUY, "2.7"))
    execution = acc.maybe_hedge("AAPL")
    assert execution is not None and execution.shares == 2
    acc.settle(execution.id, filled=D(2), avg_price=D(1))
    acc.apply_fill(2, trade(BUY, "1"))
    assert acc.maybe_hedge("AAPL") is None  # 1.7 < 2
    position = acc.position("AAPL")
    assert position is not None and position.unhedged == D("1.7")


def test_net_long_sells_at_the_broker() -> None:
    acc = make()
    acc.apply_fill(1, trade(BUY, "0.7", price="10"))
    acc.apply_fill(2, trade(BUY, "0.6", price="20"))
    execution = acc.maybe_hedge("AAPL")
    assert execution is not None
    assert (execution.direction, execution.shares) == (SELL, 1)
    assert link_map(acc, execution.id) == {1: D("0.7"), 2: D("0.3")}
    position = acc.position("AAPL")
    assert position is not None
    assert (position.in_flight, position.unhedged) == (D(-1), D("0.3"))
    assert acc.reference_price(execution.id) == D(13)  # (0.7*10 + 0.3*20) / 1
    acc.settle(execution.id, filled=D(1), avg_price=D(13))
    position = acc.position("AAPL")
    assert position is not None
    assert (position.hedged, position.in_flight, position.unhedged) == dec(-1, 0, "0.3")


def test_reference_price_is_link_weighted() -> None:
    acc = make()
    acc.apply_fill(1, trade(SELL, "0.3", price="100"))
    acc.apply_fill(2, trade(SELL, "0.5", price="101"))
    acc.apply_fill(3, trade(SELL, "0.4", price="102"))
    execution = acc.maybe_hedge("AAPL")
    assert execution is not None
    assert acc.reference_price(execution.id) == D("100.9")
    acc.apply_fill(4, trade(SELL, "2", price="3"))
    acc.settle(execution.id, filled=D(1), avg_price=D("100.9"))
    second = acc.maybe_hedge("AAPL")
    assert second is not None and second.shares == 2
    # 0.2 @ 102 + 1.8 @ 3, over 2 shares
    assert acc.reference_price(second.id) == D("12.9")
    with pytest.raises(KeyError):
        acc.reference_price(execution.id)


# ----------------------------------------------------------------------------- endings


def test_partial_fill_then_cancel_trims_newest_first_and_reopens() -> None:
    acc = make()
    acc.apply_fill(1, trade(SELL, "0.3"))
    acc.apply_fill(2, trade(SELL, "0.5"))
    acc.apply_fill(3, trade(SELL, "0.4"))
    execution = acc.maybe_hedge("AAPL")
    assert execution is not None
    acc.mark_submitted(execution.id, "order-1")
    acc.take_changes()
    done = acc.settle(execution.id, filled=D("0.45"), avg_price=D("99.5"), reason="canceled")
    assert (done.status, done.filled_shares, done.reason) == (
        ExecutionStatus.FILLED,
        D("0.45"),
        "canceled",
    )
    changes = acc.take_changes()
    # returned 0.55: lot 3's link (0.2) goes entirely, lot 2's link gives back 0.35
    assert {k: v.shares for k, v in changes.links.items()} == {(1, 3): 0, (1, 2): D("0.15")}
    assert {k: (v.linked, v.open) for k, v in changes.lots.items()} == {
        3: (0, D("0.4")),
        2: (D("0.15"), D("0.35")),
    }
    assert open_map(acc) == {2: D("0.35"), 3: D("0.4")}
    position = acc.position("AAPL")
    assert position is not None
    assert (position.hedged, position.in_flight, position.unhedged) == dec("0.45", 0, "-0.75")
    assert acc.maybe_hedge("AAPL") is None  # re-check: 0.75 < 1

    acc.apply_fill(4, trade(SELL, "0.3"))
    again = acc.maybe_hedge("AAPL")
    assert again is not None and (again.id, again.shares) == (2, 1)
    assert link_map(acc, 2) == {2: D("0.35"), 3: D("0.4"), 4: D("0.25")}
    acc.check_invariants()


def test_partial_fill_leaving_enough_rehedges_at_once() -> None:
    acc = make()
    acc.apply_fill(1, trade(SELL, "2.5"))
    first = acc.maybe_hedge("AAPL")
    assert first is not None and first.shares == 2
    acc.settle(first.id, filled=D("0.000000000000000001"), avg_price=D(1), reason="expired")
    second = acc.maybe_hedge("AAPL")
    assert second is not None
    assert (second.id, second.direction, second.shares) == (2, BUY, 2)
    position = acc.position("AAPL")
    assert position is not None
    assert position.unhedged == D("-0.499999999999999999")
    assert link_map(acc, 2) == {1: D(2)}


def test_failed_execution_returns_everything() -> None:
    acc = make()
    acc.apply_fill(1, trade(SELL, "0.6"))
    acc.apply_fill(2, trade(SELL, "0.6"))
    execution = acc.maybe_hedge("AAPL")
    assert execution is not None
    acc.take_changes()
    done = acc.settle(execution.id, filled=D(0), avg_price=None, reason="canceled")
    assert (done.status, done.filled_shares, done.avg_price) == (ExecutionStatus.FAILED, D(0), None)
    changes = acc.take_changes()
    assert {k: v.shares for k, v in changes.links.items()} == {(1, 2): 0, (1, 1): 0}
    assert open_map(acc) == {1: D("0.6"), 2: D("0.6")}
    position = acc.position("AAPL")
    assert position is not None
    assert (position.hedged, position.in_flight, position.unhedged) == dec(0, 0, "-1.2")
    assert position.consecutive_rejections == 0  # a cancel is not a rejection
    retry = acc.maybe_hedge("AAPL")
    assert retry is not None and retry.id == 2
    assert link_map(acc, 2) == {1: D("0.6"), 2: D("0.4")}


def test_opposite_fill_while_in_flight_then_failure_nets_reopened_quantity() -> None:
    acc = make()
    acc.apply_fill(1, trade(SELL, "0.3"))
    acc.apply_fill(2, trade(SELL, "0.5"))
    acc.apply_fill(3, trade(SELL, "0.4"))
    execution = acc.maybe_hedge("AAPL")
    assert execution is not None
    acc.apply_fill(4, trade(BUY, "0.5"))  # closes lot 3's open 0.2, opens BUY 0.3
    assert open_map(acc) == {4: D("0.3")}
    acc.check_invariants()
    acc.take_changes()
    acc.settle(execution.id, filled=D(0), avg_price=None, rejected=True, reason="rejected")
    # reopened SELL 0.3/0.5/0.2 nets FIFO against BUY 0.3: lots 1 and 4 close each other
    changes = acc.take_changes()
    assert {k: (v.closed, v.linked, v.open) for k, v in changes.lots.items()} == {
        3: dec("0.2", 0, "0.2"),
        2: dec(0, 0, "0.5"),
        1: dec("0.3", 0, 0),
        4: dec("0.3", 0, 0),
    }
    assert open_map(acc) == {2: D("0.5"), 3: D("0.2")}
    assert {x.trade_id for x in acc.lots("AAPL")} == {2, 3}  # closed lots are forgotten
    position = acc.position("AAPL")
    assert position is not None and position.unhedged == D("-0.7")
    assert position.consecutive_rejections == 1
    acc.check_invariants()


def test_opposite_fill_while_in_flight_then_full_fill() -> None:
    acc = make()
    acc.apply_fill(1, trade(SELL, "1"))
    execution = acc.maybe_hedge("AAPL")
    assert execution is not None
    acc.apply_fill(2, trade(BUY, "1.5"))
    acc.settle(execution.id, filled=D(1), avg_price=D(1))
    sell = acc.maybe_hedge("AAPL")
    assert sell is not None
    assert (sell.direction, sell.shares) == (SELL, 1)
    assert link_map(acc, sell.id) == {2: D(1)}


def test_rejections_park_the_ticker_until_unpark() -> None:
    acc = make(max_rejections=3)
    acc.apply_fill(1, trade(SELL, "1.5"))
    for attempt in range(1, 4):
        execution = acc.maybe_hedge("AAPL")
        assert execution is not None and execution.id == attempt
        acc.settle(execution.id, filled=D(0), avg_price=None, rejected=True, reason="no")
        position = acc.position("AAPL")
        assert position is not None
        assert position.consecutive_rejections == attempt
        assert position.parked is (attempt == 3)
    assert acc.maybe_hedge("AAPL") is None
    acc.apply_fill(2, trade(SELL, "5"))
    assert acc.maybe_hedge("AAPL") is None  # parked: still no order
    acc.take_changes()
    acc.unpark("AAPL")
    changes = acc.take_changes()
    assert changes.positions["AAPL"].parked is False
    assert changes.positions["AAPL"].consecutive_rejections == 0
    execution = acc.maybe_hedge("AAPL")
    assert execution is not None and (execution.id, execution.shares) == (4, 6)
    acc.unpark("MSFT")  # unknown ticker: nothing to do
    assert acc.position("MSFT") is None


def test_a_fill_resets_the_rejection_count() -> None:
    acc = make(max_rejections=2)
    acc.apply_fill(1, trade(SELL, "3"))
    first = acc.maybe_hedge("AAPL")
    assert first is not None
    acc.settle(first.id, filled=D(0), avg_price=None, rejected=True)
    second = acc.maybe_hedge("AAPL")
    assert second is not None
    acc.settle(second.id, filled=D("0.5"), avg_price=D(1))
    position = acc.position("AAPL")
    assert position is not None and position.consecutive_rejections == 0
    third = acc.maybe_hedge("AAPL")
    assert third is not None
    acc.settle(third.id, filled=D(0), avg_price=None, rejected=True)
    position = acc.position("AAPL")
    assert position is not None
    assert (position.consecutive_rejections, position.parked) == (1, False)


def test_paused_creates_no_execution() -> None:
    acc = make()
    acc.apply_fill(1, trade(SELL, "3"))
    acc.take_changes()
    assert acc.maybe_hedge("AAPL", blocked=True) is None
    assert acc.take_changes().is_empty()
    assert acc.maybe_hedge("AAPL") is not None
    assert acc.maybe_hedge("UNKNOWN") is None


def test_compensation_reverses_a_hedged_fill() -> None:
    acc = make()
    acc.apply_fill(1, trade(SELL, "1.2"))
    execution = acc.maybe_hedge("AAPL")
    assert execution is not None
    acc.settle(execution.id, filled=D(1), avg_price=D(100))
    # the fill is reorged away: a compensation with the opposite direction
    acc.apply_fill(2, trade(BUY, "1.2", kind=TradeKind.COMPENSATION, reverses=1))
    position = acc.position("AAPL")
    assert position is not None
    assert (position.onchain_net, position.hedged, position.unhedged) == dec(0, 1, 1)
    unwind = acc.maybe_hedge("AAPL")
    assert unwind is not None
    assert (unwind.direction, unwind.shares) == (SELL, 1)
    assert link_map(acc, unwind.id) == {2: D(1)}
    acc.settle(unwind.id, filled=D(1), avg_price=D(100))
    position = acc.position("AAPL")
    assert position is not None
    assert (position.onchain_net, position.hedged, position.unhedged) == dec(0, 0, 0)
    assert acc.lots("AAPL") == []


def test_eighteen_decimals_and_big_amounts_stay_exact() -> None:
    acc = make()
    big = "123456789012345.123456789012345678"  # 33 significant digits
    acc.apply_fill(1, trade(SELL, big, price="0.000000000000000001"))
    acc.apply_fill(2, trade(SELL, "0.876543210987654322"))
    execution = acc.maybe_hedge("AAPL")
    assert execution is not None
    assert execution.shares == 123456789012346
    assert link_map(acc, execution.id) == {
        1: D(big),
        2: D("0.876543210987654322"),
    }
    acc.settle(execution.id, filled=D("123456789012345.999999999999999999"), avg_price=D(1))
    position = acc.position("AAPL")
    assert position is not None
    assert position.unhedged == D("-0.000000000000000001")
    assert open_map(acc) == {2: D("0.000000000000000001")}
    acc.apply_fill(3, trade(BUY, "0.000000000000000001"))
    position = acc.position("AAPL")
    assert position is not None and position.unhedged == 0
    assert acc.lots("AAPL") == []
    acc.check_invariants()


def test_settle_rejects_impossible_fills_without_changing_state() -> None:
    acc = make()
    acc.apply_fill(1, trade(SELL, "1"))
    execution = acc.maybe_hedge("AAPL")
    assert execution is not None
    acc.take_changes()
    for filled in (D("1.000000000000000001"), D("-0.1"), D("NaN")):
        with pytest.raises(ValueError):
            acc.settle(execution.id, filled=filled, avg_price=D(1))
    assert acc.take_changes().is_empty()
    assert acc.in_flight("AAPL") == execution
    with pytest.raises(KeyError):
        acc.settle(99, filled=D(0), avg_price=None)
    acc.settle(execution.id, filled=D(1), avg_price=D(1))
    with pytest.raises(KeyError):
        acc.settle(execution.id, filled=D(1), avg_price=D(1))


def test_mark_submitted() -> None:
    acc = make()
    acc.apply_fill(1, trade(SELL, "1"))
    execution = acc.maybe_hedge("AAPL")
    assert execution is not None
    acc.take_changes()
    acc.mark_submitted(execution.id, "dry-x")
    in_flight = acc.in_flight("AAPL")
    assert in_flight is not None
    assert (in_flight.status, in_flight.broker_order_id) == (ExecutionStatus.SUBMITTED, "dry-x")
    assert list(acc.take_changes().executions) == [execution.id]
    acc.mark_submitted(execution.id, "dry-x")  # idempotent
    assert acc.take_changes().is_empty()
    with pytest.raises(ValueError):
        acc.mark_submitted(execution.id, "other")
    with pytest.raises(KeyError):
        acc.mark_submitted(42, "x")


def test_bad_fills_are_refused() -> None:
    acc = make()
    acc.apply_fill(1, trade(SELL, "0.5"))
    with pytest.raises(ValueError):
        acc.apply_fill(1, trade(SELL, "0.5"))
    with pytest.raises(ValueError):
        acc.apply_fill(2, trade(SELL, "0"))


def test_tickers_are_independent() -> None:
    acc = make()
    acc.apply_fill(1, trade(SELL, "0.6", ticker="AAPL"))
    acc.apply_fill(2, trade(SELL, "0.6", ticker="MSFT"))
    acc.apply_fill(3, trade(BUY, "0.6", ticker="MSFT"))
    assert acc.maybe_hedge("AAPL") is None
    assert acc.maybe_hedge("MSFT") is None
    acc.apply_fill(4, trade(SELL, "0.6", ticker="AAPL"))
    assert acc.maybe_hedge("MSFT") is None
    execution = acc.maybe_hedge("AAPL")
    assert execution is not None
    assert [p.ticker for p in acc.positions()] == ["AAPL", "MSFT"]
    assert [e.id for e in acc.in_flight_executions()] == [execution.id]
    assert acc.in_flight("MSFT") is None


# ----------------------------------------------------------------------------- ids, changes


def test_client_order_id_format_and_length() -> None:
    assert client_order_id(INSTANCE, 7) == "bot-0123456789abcdef-7"
    longest = client_order_id(INSTANCE, 10**27 - 1)
    assert len(longest) == 48
    with pytest.raises(ValueError):
        client_order_id(INSTANCE, 10**27)  # 49 characters
    for bad in ("0123456789ABCDEF", "0123456789abcde", "0123456789abcdef0", "g123456789abcdef"):
        with pytest.raises(ValueError):
            client_order_id(bad, 1)
    with pytest.raises(ValueError):
        client_order_id(INSTANCE, -1)
    with pytest.raises(ValueError):
        Accumulator(threshold=1, max_rejections=3, instance_id="x", next_execution_id=1)
    with pytest.raises(ValueError):
        Accumulator(threshold=0, max_rejections=3, instance_id=INSTANCE, next_execution_id=1)
    with pytest.raises(ValueError):
        Accumulator(threshold=1, max_rejections=0, instance_id=INSTANCE, next_execution_id=1)


def test_execution_ids_start_at_next_execution_id() -> None:
    acc = make(next_id=41)
    acc.apply_fill(1, trade(BUY, "1"))
    execution = acc.maybe_hedge("AAPL")
    assert execution is not None
    assert (execution.id, execution.client_order_id) == (41, f"bot-{INSTANCE}-41")
    assert acc.next_execution_id == 42


def test_take_changes_contents() -> None:
    acc = make()
    assert acc.take_changes() == Changes({}, {}, {}, {})
    acc.apply_fill(1, trade(SELL, "0.7", price="5"))
    assert acc.take_changes() == Changes(
        lots={1: Lot(1, "AAPL", SELL, D("0.7"), D(5))},
        links={},
        executions={},
        positions={"AAPL": Position("AAPL", onchain_net=D("-0.7"))},
    )
    acc.apply_fill(2, trade(SELL, "0.7", price="6"))
    execution = acc.maybe_hedge("AAPL")
    assert execution is not None
    assert acc.take_changes() == Changes(
        lots={
            2: Lot(2, "AAPL", SELL, D("0.7"), D(6), linked=D("0.3")),
            1: Lot(1, "AAPL", SELL, D("0.7"), D(5), linked=D("0.7")),
        },
        links={(1, 1): Link(1, 1, D("0.7"), 0), (1, 2): Link(1, 2, D("0.3"), 1)},
        executions={1: Execution(1, "AAPL", BUY, 1, f"bot-{INSTANCE}-1")},
        positions={"AAPL": Position("AAPL", onchain_net=D("-1.4"), in_flight=D(1))},
    )
    assert acc.take_changes().is_empty()
    acc.settle(1, filled=D(1), avg_price=D("5.3"))
    assert acc.take_changes() == Changes(
        lots={},
        links={},
        executions={
            1: Execution(
                1,
                "AAPL",
                BUY,
                1,
                f"bot-{INSTANCE}-1",
                status=ExecutionStatus.FILLED,
                filled_shares=D(1),
                avg_price=D("5.3"),
            )
        },
        positions={"AAPL": Position("AAPL", onchain_net=D("-1.4"), hedged=D(1))},
    )
    # snapshots: mutating them does not touch the accumulator
    acc.apply_fill(3, trade(BUY, "0.1"))
    snapshot = acc.take_changes()
    snapshot.lots[2].closed = D(0)
    snapshot.positions["AAPL"].onchain_net = D(99)
    assert open_map(acc) == {2: D("0.3")}
    position = acc.position("AAPL")
    assert position is not None and position.onchain_net == D("-1.3")


# ----------------------------------------------------------------------------- restart


def _script() -> list[tuple[str, tuple[object, ...]]]:
    return [
        ("fill", (1, trade(SELL, "0.3", price="10"))),
        ("fill", (2, trade(BUY, "0.2", price="11", ticker="MSFT"))),
        ("fill", (3, trade(SELL, "0.5", price="12"))),
        ("fill", (4, trade(SELL, "0.4", price="13"))),
        ("fill", (5, trade(BUY, "1.9", price="14", ticker="MSFT"))),
        ("submit", ("MSFT",)),
        ("fill", (6, trade(BUY, "0.25", price="15"))),  # AAPL in flight, lots linked
        ("settle", ("AAPL", "0.6")),
        ("fill", (7, trade(SELL, "1.1", price="16"))),
        ("settle", ("MSFT", "0")),
        ("fill", (8, trade(SELL, "0.3", price="17", ticker="MSFT"))),
        ("settle", ("AAPL", "1")),
        ("settle", ("MSFT", "1")),
        ("fill", (9, trade(SELL, "2.2", price="18"))),
        ("settle", ("AAPL", "0.123456789012345678")),
        ("settle", ("AAPL", "2")),
    ]


def _run(acc: Accumulator, step: tuple[str, tuple[object, ...]]) -> list[object]:
    """Play one engine step (each ends with maybe_hedge on every ticker); return what it saw."""
    op, args = step
    seen: list[object] = []
    if op == "fill":
        trade_id, the_trade = args
        assert isinstance(trade_id, int) and isinstance(the_trade, Trade)
        acc.apply_fill(trade_id, the_trade)
    elif op == "submit":
        execution = acc.in_flight(str(args[0]))
        assert execution is not None
        acc.mark_submitted(execution.id, f"dry-{execution.client_order_id}")
    else:
        execution = acc.in_flight(str(args[0]))
        assert execution is not None
        seen.append(acc.reference_price(execution.id))
        filled = D(str(args[1]))
        seen.append(acc.settle(execution.id, filled=filled, avg_price=D(1) if filled else None))
    for ticker in ("AAPL", "MSFT"):
        seen.append(acc.maybe_hedge(ticker))
    seen.append(acc.take_changes())
    acc.check_invariants()
    return seen


@pytest.mark.parametrize("cut", range(len(_script()) + 1))
def test_rebuild_from_persisted_state_continues_identically(cut: int) -> None:
    script = _script()
    first = make()
    store = PersistedState()
    for step in script[:cut]:
        for item in _run(first, step):
            if isinstance(item, Changes):
                store.apply(item)
    second = store.load(
        instance_id=INSTANCE, threshold=1, max_rejections=3, next_id=first.next_execution_id
    )
    assert second.positions() == first.positions()
    assert second.in_flight_executions() == first.in_flight_executions()
    for ticker in ("AAPL", "MSFT"):
        assert second.lots(ticker) == first.lots(ticker)
    for step in script[cut:]:
        assert _run(second, step) == _run(first, step)
    assert second.positions() == first.positions()


def test_rebuild_refuses_inconsistent_state() -> None:
    acc = make()
    store = PersistedState()
    acc.apply_fill(1, trade(SELL, "0.6"))
    acc.apply_fill(2, trade(SELL, "0.6"))
    acc.maybe_hedge("AAPL")
    store.apply(acc.take_changes())
    del store.lots[2]  # a lot the engine forgot to load
    with pytest.raises(ValueError):
        store.load(instance_id=INSTANCE, threshold=1, max_rejections=3, next_id=2)
    store.apply(acc.take_changes())
    acc2 = make()
    acc2.apply_fill(2, trade(SELL, "0.6"))
    store.lots[2] = acc2.lots("AAPL")[0]  # present but missing its link
    with pytest.raises(ValueError):
        store.load(instance_id=INSTANCE, threshold=1, max_rejections=3, next_id=2)
    with pytest.raises(ValueError):  # next id not above the in-flight ids
        PersistedState(
            executions={1: Execution(1, "AAPL", BUY, 1, "x")},
            positions={"AAPL": Position("AAPL", in_flight=D(1))},
        ).load(instance_id=INSTANCE, threshold=1, max_rejections=3, next_id=1)
