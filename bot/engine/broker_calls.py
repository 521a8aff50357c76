"""Talking to the broker about one execution: place it, or resolve it by ``client_order_id``.

Returns what happened as data; the engine books it in a transaction. A timeout or 5xx
(``OutcomeUnknown``, any ``TransientError``) is never a failure: the execution stays in flight.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from loguru import logger

from bot.broker.base import Broker, OrderRequest, OrderState
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
        qty=execution.shares,
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
