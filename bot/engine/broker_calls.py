"""Talking to the broker about one execution: place it, or resolve it by ``client_order_id``.

Returns what happened as data; the engine books it in a transaction. A timeout or 5xx
(``OutcomeUnknown``, any ``TransientError``) is never a failure: the execution stays in flight.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from loguru import logger

from bot.broker.base import Broker, OrderRequest, OrderState
from bot.core.accumulator import Accumulator
from bot.core.amounts import ZERO
from bot.core.lots import Execution
from bot.core.model import ExecutionStatus
from bot.errors import BrokerRejected, TransientError


@dataclass(frozen=True, slots=True)
class BrokerOutcome:
    """Exactly one of: a known order state, a rejection, or an unknown outcome."""

    state: OrderState | None = None
    rejected_reason: str | None = None
    unknown_reason: str | None = None


def order_request(execution: Execution, reference_price: Decimal) -> OrderRequest:
    return OrderRequest(
        client_order_id=execution.client_order_id,
        symbol=execution.ticker,
        side=execution.direction,
        qty=Decimal(execution.shares),
        reference_price=reference_price,
    )


async def place(broker: Broker, request: OrderRequest) -> BrokerOutcome:
    """Place a new order (its PENDING row is already committed)."""
    try:
        return BrokerOutcome(state=await broker.place(request))
    except BrokerRejected as exc:
        return BrokerOutcome(rejected_reason=f"rejected by the broker: {exc}")
    except TransientError as exc:
        logger.warning("order {} outcome unknown: {}", request.client_order_id, exc)
        return BrokerOutcome(unknown_reason=str(exc))


async def resolve(broker: Broker, execution: Execution, reference_price: Decimal) -> BrokerOutcome:
    """Resolve an in-flight execution: look it up; place it with the same key if unknown."""
    try:
        state = await broker.lookup(execution.client_order_id)
    except TransientError as exc:
        return BrokerOutcome(unknown_reason=str(exc))
    if state is not None:
        return BrokerOutcome(state=state)
    if execution.status is ExecutionStatus.SUBMITTED:
        logger.warning(
            "broker does not know submitted order {} ({}); placing it again with the same key",
            execution.client_order_id,
            execution.broker_order_id,
        )
    return await place(broker, order_request(execution, reference_price))


def apply_outcome(accumulator: Accumulator, execution: Execution, outcome: BrokerOutcome) -> bool:
    """Settle (or mark submitted) ``execution`` from a broker outcome; True when it ended."""
    if outcome.rejected_reason is not None:
        accumulator.settle(
            execution.id,
            filled=ZERO,
            avg_price=None,
            rejected=True,
            reason=outcome.rejected_reason,
        )
        logger.warning("execution {} FAILED: {}", execution.id, outcome.rejected_reason)
        return True
    state = outcome.state
    if state is None:
        return False
    if execution.status is ExecutionStatus.PENDING:
        accumulator.mark_submitted(execution.id, state.broker_order_id)
    if not state.terminal:
        return False
    filled = state.filled_qty
    reason = None if filled > 0 else f"broker status {state.status}: nothing filled"
    ended = accumulator.settle(
        execution.id,
        filled=filled,
        avg_price=state.filled_avg_price if filled > 0 else None,
        rejected=state.rejected,
        reason=reason,
    )
    logger.info(
        "execution {} {}: {} of {} {} at {}",
        ended.id,
        ended.status,
        ended.filled_shares,
        ended.shares,
        ended.ticker,
        ended.avg_price,
    )
    return True
