"""SPEC §5's exactly-once rules, one by one, on the pure-ish broker calls with a scripted broker."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from bot.broker.base import OrderRequest, OrderState, OrderStatus
from bot.core.accumulator import Accumulator
from bot.core.lots import Execution
from bot.core.model import Direction, ExecutionStatus
from bot.engine import broker_calls
from bot.engine.broker_calls import NOT_FOUND_GRACE, Verdict
from bot.errors import BrokerAccountRefused, BrokerRejected, OrderMismatch, OutcomeUnknown

T0 = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
CID = "bot-0123456789abcdef-1"


def state(status: OrderStatus = OrderStatus.NEW, **kw: Any) -> OrderState:
    fields: dict[str, Any] = {
        "broker_order_id": "b-1",
        "client_order_id": CID,
        "symbol": "AAPL",
        "side": Direction.BUY,
        "qty": Decimal(2),
        "status": status,
        "filled_qty": Decimal(0),
        "filled_avg_price": None,
    }
    fields.update(kw)
    return OrderState(**fields)


@dataclass
class Scripted:
    """Answers each call from its list (an exception is raised); records the calls."""

    lookups: list[Any] = field(default_factory=list)
    places: list[Any] = field(default_factory=list)
    listed: list[OrderState] = field(default_factory=list)
    by_id: dict[str, OrderState] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    kind = "scripted"
    host = "scripted"
    keeps_positions = True

    @staticmethod
    def _answer(script: list[Any]) -> Any:
        answer = script.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def place(self, order: OrderRequest) -> OrderState:
        self.calls.append(f"place {order.client_order_id}")
        return self._answer(self.places)  # type: ignore[no-any-return]

    async def lookup(self, client_order_id: str) -> OrderState | None:
        self.calls.append(f"lookup {client_order_id}")
        return self._answer(self.lookups)  # type: ignore[no-any-return]

    async def get_order(self, broker_order_id: str) -> OrderState | None:
        self.calls.append(f"get {broker_order_id}")
        return self.by_id.get(broker_order_id)

    async def orders_since(self, after: datetime) -> list[OrderState]:
        self.calls.append(f"list since {after.isoformat()}")
        return list(self.listed)


def execution(**kw: Any) -> Execution:
    fields: dict[str, Any] = {
        "id": 1,
        "ticker": "AAPL",
        "direction": Direction.BUY,
        "shares": Decimal(2),
        "client_order_id": CID,
        "created_at": T0,
    }
    fields.update(kw)
    return Execution(**fields)


async def test_not_found_without_an_unknown_outcome_is_placed_with_the_same_id() -> None:
    broker = Scripted(lookups=[None], places=[state()])
    outcome = await broker_calls.resolve(broker, execution(), Decimal(100), T0)  # type: ignore[arg-type]
    assert broker.calls == [f"lookup {CID}", f"place {CID}"]
    assert outcome.verdict is Verdict.STATE and not outcome.not_found


async def test_a_4xx_after_an_unknown_outcome_keeps_it_in_flight() -> None:
    broker = Scripted(
        lookups=[None, None],
        places=[
            BrokerRejected("qty must be integer"),
            BrokerAccountRefused("insufficient buying power"),
        ],
    )
    pending = execution(unknown_since=T0)
    first = await broker_calls.resolve(broker, pending, Decimal(100), T0)  # type: ignore[arg-type]
    second = await broker_calls.resolve(broker, pending, Decimal(100), T0)  # type: ignore[arg-type]
    assert (first.verdict, second.verdict) == (Verdict.WAIT, Verdict.WAIT)
    assert first.not_found and second.not_found
    # never a rejection that would fail (or park) an execution whose order may exist
    assert broker.calls.count(f"place {CID}") == 2


async def test_only_five_minutes_of_not_found_and_an_order_list_without_it_fail_it() -> None:
    pending = execution(unknown_since=T0, not_found_since=T0)
    broker = Scripted(lookups=[None], places=[OutcomeUnknown("timeout")])
    early = await broker_calls.resolve(
        broker, pending, Decimal(100), T0 + NOT_FOUND_GRACE - timedelta(seconds=1)
    )  # type: ignore[arg-type]
    assert early.verdict is Verdict.WAIT and broker.calls[-1] == f"place {CID}"

    found_late = state(OrderStatus.FILLED, filled_qty=Decimal(2), filled_avg_price=Decimal(100))
    broker = Scripted(lookups=[None], listed=[state(client_order_id="bot-other-9"), found_late])
    listed = await broker_calls.resolve(broker, pending, Decimal(100), T0 + NOT_FOUND_GRACE)  # type: ignore[arg-type]
    assert listed.verdict is Verdict.STATE and listed.state == found_late
    assert broker.calls[-1] == f"list since {(T0 - broker_calls.ORDER_LIST_MARGIN).isoformat()}"

    broker = Scripted(lookups=[None], listed=[state(client_order_id="bot-other-9")])
    lost = await broker_calls.resolve(broker, pending, Decimal(100), T0 + NOT_FOUND_GRACE)  # type: ignore[arg-type]
    assert lost.verdict is Verdict.LOST
    assert not any(c.startswith("place") for c in broker.calls)


async def test_a_submitted_execution_is_followed_by_its_broker_id_and_never_placed_again() -> None:
    submitted = execution(status=ExecutionStatus.SUBMITTED, broker_order_id="b-1")
    broker = Scripted()
    outcome = await broker_calls.resolve(broker, submitted, Decimal(100), T0)  # type: ignore[arg-type]
    assert outcome.verdict is Verdict.WAIT  # the broker forgot it: wait, loudly, never re-place
    broker.by_id["b-1"] = state(OrderStatus.PARTIALLY_FILLED, filled_qty=Decimal(1))
    outcome = await broker_calls.resolve(broker, submitted, Decimal(100), T0)  # type: ignore[arg-type]
    assert outcome.verdict is Verdict.STATE
    assert broker.calls == ["get b-1", "get b-1"]


def test_an_order_that_differs_from_its_execution_is_fatal() -> None:
    acc = Accumulator(
        threshold=1, max_rejections=3, instance_id="0123456789abcdef", next_execution_id=1
    )
    from bot.core.model import Side, Trade, TradeKind

    trade = Trade(
        "0x" + "1" * 64,
        0,
        Side.TAKE,
        0,
        TradeKind.FILL,
        1,
        "0x" + "2" * 64,
        "AAPL",
        Decimal(2),
        Direction.SELL,
        Decimal(100),
        Decimal(200),
        "0xE",
        "0xU",
    )
    acc.apply_fill(1, trade)
    created = acc.maybe_hedge("AAPL", now=T0)
    assert created is not None
    wrong = state(client_order_id=created.client_order_id, symbol="AAPL", side=Direction.SELL)
    outcome = broker_calls.BrokerOutcome(Verdict.STATE, state=wrong, reachable=True)
    with pytest.raises(OrderMismatch, match="another bot on this account"):
        broker_calls.apply_outcome(acc, created, outcome, T0)
    more = state(client_order_id=created.client_order_id, qty=Decimal(3))
    with pytest.raises(OrderMismatch):
        broker_calls.apply_outcome(
            acc, created, broker_calls.BrokerOutcome(Verdict.STATE, state=more), T0
        )
