"""Talking to the broker about one execution (SPEC §5): place it, resolve it, follow it.

Returns what happened as data (:class:`BrokerOutcome`); the engine books it in a transaction.
The rules that make placement exactly-once:

- A PENDING execution the broker does not know is placed with the **same** ``client_order_id``.
- After any attempt with an unknown outcome (timeout, 5xx, dropped connection, or a PENDING row
  found at startup), only the broker's own record ends the execution: a later 4xx keeps it in
  flight; it fails only after lookups have said "not found" for :data:`NOT_FOUND_GRACE` *and*
  the broker's order list since the execution was created does not show the id.
- A SUBMITTED execution (broker id known) is followed by that id and never placed again.
- An order under our id whose symbol, side or quantity differ is :class:`OrderMismatch` (fatal).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from loguru import logger

from bot.broker.base import Broker, OrderRequest, OrderState, OrderStatus
from bot.core.accumulator import Accumulator
from bot.core.amounts import ZERO
from bot.core.blocking import Reason
from bot.core.lots import Execution
from bot.core.model import ExecutionStatus
from bot.errors import (
    BrokerAccountRefused,
    BrokerAuthError,
    BrokerRateLimited,
    BrokerRejected,
    BrokerUnavailable,
    OrderMismatch,
    OutcomeUnknown,
)

NOT_FOUND_GRACE = timedelta(minutes=5)
ORDER_LIST_MARGIN = timedelta(minutes=1)  # clocks differ: list orders from a little earlier


class Verdict(StrEnum):
    STATE = "state"  # the broker's record of the order
    REJECTED = "rejected"  # refused, nothing placed: FAILED, counts towards parking
    REFUSED = "refused"  # refused for the whole account, nothing placed: FAILED, not counted
    LOST = "lost"  # never reached the broker (SPEC §5's 5-minute rule): FAILED, alerted
    WAIT = "wait"  # still in flight: try again later


@dataclass(frozen=True, slots=True)
class BrokerOutcome:
    verdict: Verdict
    state: OrderState | None = None
    reason: str | None = None
    unknown: bool = False  # this attempt's outcome is unknown
    not_found: bool = False  # a lookup answered "not found"
    retry_after_s: float | None = None
    blocking: Reason | None = None  # a blocking reason this attempt revealed
    reachable: bool = False  # the broker answered (clears "broker unreachable")


def order_request(execution: Execution, reference_price: Decimal) -> OrderRequest:
    return OrderRequest(
        client_order_id=execution.client_order_id,
        symbol=execution.ticker,
        side=execution.direction,
        qty=execution.shares,
        reference_price=reference_price,
    )


def check_matches(execution: Execution, state: OrderState) -> None:
    """Raise :class:`OrderMismatch` unless ``state`` is the order ``execution`` asked for."""
    same_order = state.client_order_id == execution.client_order_id
    if (
        state.symbol != execution.ticker
        or state.side is not execution.direction
        or (same_order and state.qty != execution.shares)
    ):
        raise OrderMismatch(
            f"the broker's order {state.broker_order_id} under {execution.client_order_id} is "
            f"{state.side} {state.qty} {state.symbol}, but execution {execution.id} is "
            f"{execution.direction} {execution.shares} {execution.ticker}: a restored backup "
            "reusing ids, or another bot on this account? Stopping: fix it before restarting"
        )


async def place(broker: Broker, request: OrderRequest, *, after_unknown: bool) -> BrokerOutcome:
    """Place an order whose PENDING row is committed; ``after_unknown``: an earlier attempt with
    this id had an unknown outcome, so a 4xx now does not prove that nothing was placed."""
    cid = request.client_order_id
    try:
        return BrokerOutcome(Verdict.STATE, state=await broker.place(request), reachable=True)
    except BrokerRejected as exc:
        if after_unknown:
            return _wait(f"refused after an unknown outcome (kept in flight): {exc}", True)
        return BrokerOutcome(Verdict.REJECTED, reason=f"rejected by the broker: {exc}")
    except BrokerAccountRefused as exc:
        verdict = Verdict.WAIT if after_unknown else Verdict.REFUSED
        return BrokerOutcome(
            verdict, reason=str(exc), blocking=Reason.ACCOUNT_REFUSED, reachable=True
        )
    except BrokerAuthError as exc:
        return BrokerOutcome(Verdict.WAIT, reason=str(exc), blocking=Reason.KEYS_REFUSED)
    except BrokerRateLimited as exc:
        return BrokerOutcome(
            Verdict.WAIT, reason=f"rate limited: {exc}", retry_after_s=exc.retry_after_s
        )
    except OutcomeUnknown as exc:
        logger.warning("order {} outcome unknown: {}", cid, exc)
        return BrokerOutcome(
            Verdict.WAIT, reason=str(exc), unknown=True, blocking=Reason.BROKER_UNREACHABLE
        )
    except BrokerUnavailable as exc:
        return BrokerOutcome(
            Verdict.WAIT, reason=str(exc), unknown=True, blocking=Reason.BROKER_UNREACHABLE
        )


def _wait(reason: str, reachable: bool) -> BrokerOutcome:
    return BrokerOutcome(Verdict.WAIT, reason=reason, reachable=reachable)


async def resolve(
    broker: Broker, execution: Execution, reference_price: Decimal, now: datetime
) -> BrokerOutcome:
    """Resolve an in-flight execution by the broker's record (see the module rules)."""
    try:
        if execution.status is ExecutionStatus.SUBMITTED:
            return await _follow(broker, execution)
        state = await broker.lookup(execution.client_order_id)
    except BrokerAuthError as exc:
        return BrokerOutcome(Verdict.WAIT, reason=str(exc), blocking=Reason.KEYS_REFUSED)
    except BrokerUnavailable as exc:
        return BrokerOutcome(
            Verdict.WAIT,
            reason=str(exc),
            retry_after_s=exc.retry_after_s,
            blocking=None if isinstance(exc, BrokerRateLimited) else Reason.BROKER_UNREACHABLE,
        )
    if state is not None:
        return BrokerOutcome(Verdict.STATE, state=state, reachable=True)
    request = order_request(execution, reference_price)
    if execution.unknown_since is None:
        return await place(broker, request, after_unknown=False)
    not_found_since = execution.not_found_since or now
    if now - not_found_since >= NOT_FOUND_GRACE:
        created = execution.created_at or execution.unknown_since
        try:
            listed = await broker.orders_since(created - ORDER_LIST_MARGIN)
        except BrokerUnavailable as exc:
            return BrokerOutcome(Verdict.WAIT, reason=str(exc), not_found=True)
        for listed_state in listed:
            if listed_state.client_order_id == execution.client_order_id:
                return BrokerOutcome(Verdict.STATE, state=listed_state, reachable=True)
        return BrokerOutcome(
            Verdict.LOST,
            reason=(
                f"not found at the broker for {NOT_FOUND_GRACE} after an unknown outcome, and "
                "not in its order list: the order never arrived"
            ),
            reachable=True,
        )
    outcome = await place(broker, request, after_unknown=True)
    return BrokerOutcome(
        outcome.verdict,
        state=outcome.state,
        reason=outcome.reason,
        unknown=outcome.unknown,
        not_found=outcome.verdict is not Verdict.STATE,
        retry_after_s=outcome.retry_after_s,
        blocking=outcome.blocking,
        reachable=outcome.reachable,
    )


async def _follow(broker: Broker, execution: Execution) -> BrokerOutcome:
    assert execution.broker_order_id is not None
    state = await broker.get_order(execution.broker_order_id)
    if state is None:
        logger.error(
            "the broker does not know order {} of execution {}; it is never placed again: "
            "waiting for the broker's record",
            execution.broker_order_id,
            execution.id,
        )
        return _wait(f"broker does not know order {execution.broker_order_id}", True)
    return BrokerOutcome(Verdict.STATE, state=state, reachable=True)


def apply_outcome(
    accumulator: Accumulator, execution: Execution, outcome: BrokerOutcome, now: datetime
) -> bool:
    """Book a broker outcome on ``execution`` (in flight); True when it ended."""
    accumulator.note_lookup(
        execution.id,
        unknown_at=now if outcome.unknown else None,
        not_found_at=now if outcome.not_found else None,
        found=outcome.verdict is Verdict.STATE,
    )
    if outcome.verdict in (Verdict.REJECTED, Verdict.REFUSED, Verdict.LOST):
        accumulator.settle(
            execution.id,
            filled=ZERO,
            avg_price=None,
            rejected=outcome.verdict is Verdict.REJECTED,
            reason=outcome.reason,
        )
        logger.warning("execution {} FAILED: {}", execution.id, outcome.reason)
        return True
    state = outcome.state
    if state is None:
        return False
    check_matches(execution, state)
    if execution.status is ExecutionStatus.PENDING:
        accumulator.mark_submitted(execution.id, state.broker_order_id)
    elif state.broker_order_id != execution.broker_order_id:
        accumulator.follow_replacement(execution.id, state.broker_order_id)
    if state.status is OrderStatus.REPLACED and state.replaced_by:
        logger.info("order {} was replaced by {}", state.broker_order_id, state.replaced_by)
        accumulator.follow_replacement(execution.id, state.replaced_by)
        return False
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
        "execution {} {}: {} of {} {} at {} (broker status {})",
        ended.id,
        ended.status,
        ended.filled_shares,
        ended.shares,
        ended.ticker,
        ended.avg_price,
        state.status,
    )
    return True
