"""The execution desk: places committed PENDING executions and follows in-flight ones (SPEC §5).

Works for the :class:`~bot.engine.drain.Engine`: every outcome is booked in one of the engine's
write transactions. It also keeps the broker-side blocking reasons the outcomes reveal (keys
refused, account-wide refusals, rejection backoff, broker unreachable) in the engine's
:class:`~bot.core.blocking.Blocks`, and follows SUBMITTED orders with one order-list request
per ``poll_interval_s`` for all of them (the account's limit is 200 requests/min).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from loguru import logger

from bot.broker.base import Broker, OrderState
from bot.core.amounts import ZERO
from bot.core.blocking import ALL, Reason, rejection_backoff
from bot.core.lots import Execution
from bot.core.model import ExecutionStatus
from bot.core.retry import delay_s
from bot.engine import broker_calls
from bot.engine.broker_calls import BrokerOutcome, Verdict
from bot.errors import BrokerUnavailable

if TYPE_CHECKING:
    from bot.engine.drain import Engine


_UNRESOLVED = "in-flight executions found at startup are not resolved with the broker yet"


@dataclass(frozen=True, slots=True)
class DeskOptions:
    rejection_backoff_s: float = 30.0
    poll_interval_s: float = 1.0
    unreachable_retry_s: float = 10.0  # a new order may probe a broker that was unreachable
    resolve_base_s: float = 0.5
    resolve_max_s: float = 30.0
    fractional: bool = False  # broker.fractional (only for assets the broker marks fractionable)


@dataclass(slots=True)
class _Attempts:
    count: int = 0
    due: float = 0.0  # time.monotonic()


@dataclass(slots=True)
class _Assets:
    fractionable: dict[str, bool] = field(default_factory=dict)


class Desk:
    def __init__(self, engine: Engine, broker: Broker, options: DeskOptions) -> None:
        self._engine = engine
        self.broker = broker
        self._options = options
        self._attempts: dict[int, _Attempts] = {}
        self._next_poll = 0.0
        self._account_refusals = 0
        self._unresolved_at_start: set[int] = set()
        self.assets = _Assets()

    # ------------------------------------------------------------------------------- terms

    def fractional_terms(self, ticker: str) -> tuple[bool, Decimal]:
        """(a fractional order is possible for ``ticker``, the broker's long position)."""
        if not self._options.fractional or not self.assets.fractionable.get(ticker, False):
            return False, ZERO
        position = self._engine.accumulator.position(ticker)
        # hedged is signed by the broker side (BUY +): what our hedges hold at the broker
        return True, ZERO if position is None else max(ZERO, position.hedged)

    # ------------------------------------------------------------------------------- placing

    async def run(self, created: list[Execution]) -> None:
        """Place each committed PENDING execution, book the outcome, place what the re-check
        creates, until nothing new comes."""
        todo = list(created)
        while todo:
            execution = todo.pop(0)
            price = self._engine.accumulator.reference_price(execution.id)
            logger.info(
                "placing {} {} {} (execution {}, ref price {})",
                execution.direction,
                execution.shares,
                execution.ticker,
                execution.id,
                price,
            )
            request = broker_calls.order_request(execution, price)
            outcome = await broker_calls.place(self.broker, request, after_unknown=False)
            todo.extend(await self.book(execution.id, outcome, recheck_now=True))

    async def book(
        self, execution_id: int, outcome: BrokerOutcome, *, recheck_now: bool
    ) -> list[Execution]:
        """Persist an outcome; when the execution ended and ``recheck_now``, re-check its
        ticker in the same transaction (else the next pass's end does)."""
        engine = self._engine

        async def body() -> list[Execution]:
            execution = next(
                (e for e in engine.accumulator.in_flight_executions() if e.id == execution_id),
                None,
            )
            if execution is None:
                return []
            now = utc_now()
            ended = broker_calls.apply_outcome(engine.accumulator, execution, outcome, now)
            if ended or outcome.reachable:
                self._unresolved_at_start.discard(execution_id)
            self._note_blocks(execution.ticker, outcome, now)
            if not ended:
                self._schedule(execution_id, outcome.retry_after_s)
                return []
            self._attempts.pop(execution_id, None)
            self._after_end(execution.ticker, outcome, now)
            return engine.decide_hedges([execution.ticker]) if recheck_now else []

        return await engine.transaction(body)

    def _note_blocks(self, ticker: str, outcome: BrokerOutcome, now: datetime) -> None:
        blocks = self._engine.blocks
        if outcome.reachable:
            if self._unresolved_at_start:
                blocks.set(ALL, Reason.BROKER_UNREACHABLE, _UNRESOLVED, now)
            elif blocks.clear(ALL, Reason.BROKER_UNREACHABLE):
                logger.info("broker: reachable again")
            if blocks.clear(ALL, Reason.KEYS_REFUSED):
                logger.info("broker: keys accepted again")
        if outcome.blocking is Reason.ACCOUNT_REFUSED:
            self._account_refusals += 1
            wait = rejection_backoff(self._options.rejection_backoff_s, self._account_refusals)
            if blocks.set(ALL, Reason.ACCOUNT_REFUSED, outcome.reason or "", now, until=now + wait):
                logger.error("broker refused for the whole account: {}", outcome.reason)
        elif outcome.blocking is Reason.BROKER_UNREACHABLE:
            # no new order until the broker answers about every execution found at startup;
            # otherwise a new order may probe it after a while
            until = None
            if not self._unresolved_at_start:
                until = now + timedelta(seconds=self._options.unreachable_retry_s)
            blocks.set(ALL, Reason.BROKER_UNREACHABLE, outcome.reason or "", now, until=until)
        elif outcome.blocking is Reason.KEYS_REFUSED:
            if blocks.set(ALL, Reason.KEYS_REFUSED, outcome.reason or "", now):
                logger.error("broker refused the keys: {}", outcome.reason)
        elif outcome.verdict is Verdict.STATE:
            self._account_refusals = 0

    def _after_end(self, ticker: str, outcome: BrokerOutcome, now: datetime) -> None:
        position = self._engine.accumulator.position(ticker)
        rejections = 0 if position is None else position.consecutive_rejections
        if rejections and not (position is not None and position.parked):
            wait = rejection_backoff(self._options.rejection_backoff_s, rejections)
            self._engine.blocks.set(
                ticker,
                Reason.REJECTION_BACKOFF,
                outcome.reason or "rejected",
                now,
                until=now + wait,
            )
            logger.warning(
                "{}: next attempt after {} (rejection {} in a row)", ticker, wait, rejections
            )
        elif not rejections:
            self._engine.blocks.clear(ticker, Reason.REJECTION_BACKOFF)
        if outcome.verdict is Verdict.LOST:
            logger.error("ALERT {}: {}", ticker, outcome.reason)

    # ------------------------------------------------------------------------------- following

    async def resolve_at_startup(self) -> None:
        """Before anything new: every in-flight execution asked of the broker. A PENDING one may
        have died mid-request, so its outcome counts as unknown (SPEC §5)."""
        engine = self._engine
        pending = [
            e
            for e in engine.accumulator.in_flight_executions()
            if e.status is ExecutionStatus.PENDING and e.unknown_since is None
        ]
        if pending:

            async def mark() -> list[Execution]:
                now = utc_now()
                for execution in pending:
                    engine.accumulator.note_lookup(execution.id, unknown_at=now)
                return []

            await engine.transaction(mark)
        self._unresolved_at_start = {e.id for e in engine.accumulator.in_flight_executions()}
        for execution in engine.accumulator.in_flight_executions():
            await self._resolve(execution, recheck_now=True)
        if self._unresolved_at_start:
            engine.blocks.set(ALL, Reason.BROKER_UNREACHABLE, _UNRESOLVED, utc_now())
        still = engine.accumulator.in_flight_executions()
        if still:
            logger.warning(
                "{} execution(s) still in flight after startup resolution: {}",
                len(still),
                ", ".join(f"{e.id} ({e.status})" for e in still),
            )

    async def follow_due(self, *, recheck_now: bool) -> None:
        """Ask the broker about in-flight executions whose next attempt is due."""
        in_flight = self._engine.accumulator.in_flight_executions()
        if not in_flight:
            return
        now_m = time.monotonic()
        submitted = [e for e in in_flight if e.status is ExecutionStatus.SUBMITTED]
        if submitted and now_m >= self._next_poll:
            self._next_poll = now_m + self._options.poll_interval_s
            await self._poll(submitted, recheck_now=recheck_now)
        for execution in in_flight:
            if execution.status is ExecutionStatus.PENDING and self._due(execution.id, now_m):
                await self._resolve(execution, recheck_now=recheck_now)

    async def _poll(self, submitted: list[Execution], *, recheck_now: bool) -> None:
        """One order-list request for every SUBMITTED order; those it misses asked one by one."""
        created_at = [e.created_at for e in submitted if e.created_at is not None]
        listed: dict[str, OrderState] = {}
        if created_at and self.broker.keeps_positions:
            try:
                since = min(created_at) - broker_calls.ORDER_LIST_MARGIN
                listed = {s.broker_order_id: s for s in await self.broker.orders_since(since)}
            except BrokerUnavailable as exc:
                logger.warning("broker order list unavailable: {}", exc)
                return
        created: list[Execution] = []
        for execution in submitted:
            state = listed.get(execution.broker_order_id or "")
            if state is not None and not state.replaced_by:
                outcome = BrokerOutcome(Verdict.STATE, state=state, reachable=True)
                created += await self.book(execution.id, outcome, recheck_now=recheck_now)
            else:
                created += await self._resolve(execution, recheck_now=recheck_now)
        await self.run(created)

    async def _resolve(self, execution: Execution, *, recheck_now: bool) -> list[Execution]:
        engine = self._engine
        try:
            price = engine.accumulator.reference_price(execution.id)
        except KeyError:  # ended meanwhile
            return []
        outcome = await broker_calls.resolve(self.broker, execution, price, utc_now())
        created = await self.book(execution.id, outcome, recheck_now=recheck_now)
        if recheck_now:
            await self.run(created)
            return []
        return created

    def _due(self, execution_id: int, now_m: float) -> bool:
        attempts = self._attempts.get(execution_id)
        return attempts is None or attempts.due <= now_m

    def _schedule(self, execution_id: int, retry_after_s: float | None) -> None:
        attempts = self._attempts.setdefault(execution_id, _Attempts())
        attempts.count += 1
        wait = delay_s(
            attempts.count, base_s=self._options.resolve_base_s, max_s=self._options.resolve_max_s
        )
        if retry_after_s is not None:
            wait = max(wait, retry_after_s)
        attempts.due = time.monotonic() + wait


def utc_now() -> datetime:
    return datetime.now(UTC)
