"""The ordered drain (SPEC §1, §4, §5, §8): one consumer from the queue to the broker.

Transactions: many events commit together, but a transaction ends at every event that creates an
execution; its PENDING row is committed before the broker is called, the outcome is booked in the
next transaction, the ticker is re-checked at once, and only then does the next event run. So the
same events always give the same hedges with the dry-run broker. The in-memory accumulator is
persisted (``take_changes()``) in the same transactions and rebuilt from the database whenever one
rolls back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import aiosqlite
import backoff
from loguru import logger

from bot.broker.base import Broker
from bot.chain.reader import ChainReader
from bot.core.accumulator import Accumulator
from bot.core.lots import Execution
from bot.core.retry import delay_s
from bot.core.tokens import SymbolRules
from bot.engine import broker_calls
from bot.engine.broker_calls import BrokerOutcome
from bot.engine.compensation import book_compensations_in_txn
from bot.engine.prepare import Prepared, Preparer, RetryPolicy
from bot.store import ledger, queue
from bot.store.connection import ServedChain, StoreMeta, open_database

DEFAULT_BATCH_SIZE = 500


@dataclass(frozen=True, slots=True)
class EngineOptions:
    threshold_shares: int = 1
    max_rejections: int = 3
    batch_size: int = DEFAULT_BATCH_SIZE
    rpc_retry: RetryPolicy = field(default_factory=RetryPolicy)
    resolve_tries: int = 5  # at startup, per in-flight execution, before leaving it in flight
    resolve_base_s: float = 0.5
    resolve_max_s: float = 30.0


@dataclass(slots=True)
class DrainStats:
    events: int = 0
    ours: int = 0
    failed: int = 0
    trades: int = 0
    executions: int = 0


class Engine:
    """Open with :meth:`open`, call :meth:`start` once, then :meth:`drain` repeatedly."""

    def __init__(
        self,
        conn: aiosqlite.Connection,
        meta: StoreMeta,
        *,
        broker: Broker,
        chain: ChainReader,
        rules: SymbolRules,
        options: EngineOptions,
    ) -> None:
        self._conn = conn
        self.meta = meta
        self._broker = broker
        self._options = options
        self._preparer = Preparer(
            conn,
            order_owner=meta.served.order_owner,
            chain=chain,
            rules=rules,
            tokens={},
            retry=options.rpc_retry,
        )
        self._acc = self._new_accumulator(ledger.AccumulatorState(1, [], [], [], []))
        self._pause_ids: set[int] = set()
        self._recheck: set[str] = set()
        self._retry_at: dict[int, tuple[int, float]] = {}  # execution id -> (attempt, due)

    @classmethod
    async def open(
        cls,
        db_path: str | Path,
        served: ServedChain,
        *,
        broker: Broker,
        chain: ChainReader,
        rules: SymbolRules,
        options: EngineOptions | None = None,
    ) -> Engine:
        """Migrate, check the meta, load the token cache and rebuild the accumulator.

        Take the :class:`bot.store.lock.InstanceLock` before calling this.
        """
        conn, meta = await open_database(db_path, served)
        try:
            engine = cls(
                conn,
                meta,
                broker=broker,
                chain=chain,
                rules=rules,
                options=options or EngineOptions(),
            )
            engine._preparer._tokens.update(await ledger.load_tokens(conn))
            await engine._rebuild()
            engine._recheck.update(p.ticker for p in engine._acc.positions())
        except BaseException:
            await conn.close()
            raise
        return engine

    async def close(self) -> None:
        await self._conn.close()

    @property
    def accumulator(self) -> Accumulator:
        return self._acc

    @property
    def connection(self) -> aiosqlite.Connection:
        return self._conn

    @property
    def paused(self) -> bool:
        return bool(self._pause_ids)

    # ------------------------------------------------------------------------------- startup

    async def start(self) -> int:
        """Startup duties, before anything new: failed events back to pending, then every
        in-flight execution resolved with the broker (retried with backoff; an unknown outcome
        stays in flight). Returns how many failed events were re-queued."""
        retried = await queue.retry_failed(self._conn)
        if retried:
            logger.info("retrying {} failed event(s)", retried)
        for execution in self._acc.in_flight_executions():
            await self._resolve_at_startup(execution.id)
        return retried

    async def _resolve_at_startup(self, execution_id: int) -> None:
        opts = self._options

        def still_in_flight(result: bool) -> bool:
            return result

        @backoff.on_predicate(
            backoff.expo,
            still_in_flight,
            max_tries=opts.resolve_tries,
            factor=opts.resolve_base_s,
            max_value=opts.resolve_max_s,
        )
        async def attempt() -> bool:
            return await self._resolve_one(execution_id)

        if await attempt():
            logger.warning("execution {} still unresolved; it stays in flight", execution_id)

    async def _resolve_one(self, execution_id: int) -> bool:
        """Resolve one in-flight execution; True while it is still in flight."""
        execution = next(
            (e for e in self._acc.in_flight_executions() if e.id == execution_id), None
        )
        if execution is None:
            return False
        price = self._acc.reference_price(execution_id)
        outcome = await broker_calls.resolve(self._broker, execution, price)
        created = await self._book(execution, outcome)
        await self._run_executions(created)
        return any(e.id == execution_id for e in self._acc.in_flight_executions())

    # ------------------------------------------------------------------------------- drain

    async def drain(self, up_to_block: int) -> DrainStats:
        """Process every pending event at or below ``up_to_block`` in (block, log_index) order.

        Also acts on admin marks (retry, skip, unpark) and polls due in-flight executions; call
        it periodically even when nothing new arrived.
        """
        stats = DrainStats()
        while True:
            await self._housekeeping()
            events = await queue.pending_events(
                self._conn, up_to_block=up_to_block, limit=self._options.batch_size
            )
            if not events:
                return stats
            prepared = [await self._preparer.prepare(event) for event in events]
            await self._apply(prepared, stats)

    async def _housekeeping(self) -> None:
        now = time.monotonic()
        for execution in self._acc.in_flight_executions():
            attempt_due = self._retry_at.get(execution.id)
            if attempt_due is not None and attempt_due[1] <= now:
                await self._resolve_one(execution.id)
        await self._begin()
        try:
            # reorged events first: their compensations precede anything still pending (§7)
            self._recheck.update(await book_compensations_in_txn(self._conn, self._acc))
            created = self._recheck_tickers()
            await ledger.save_changes_in_txn(self._conn, self._acc.take_changes())
            await self._conn.execute("COMMIT")
        except BaseException:
            await self._rollback_and_rebuild()
            raise
        await self._run_executions(created)

    def _recheck_tickers(self) -> list[Execution]:
        tickers, self._recheck = sorted(self._recheck), set()
        return [e for t in tickers if (e := self._acc.maybe_hedge(t, paused=self.paused))]

    async def _apply(self, prepared: list[Prepared], stats: DrainStats) -> None:
        index = 0
        while index < len(prepared):
            await self._begin()
            created: list[Execution] = []
            try:
                marks: list[tuple[int, bool]] = []
                while index < len(prepared) and not created:
                    created = await self._apply_one(prepared[index], marks, stats)
                    index += 1
                await queue.mark_processed_in_txn(self._conn, marks)
                await ledger.save_changes_in_txn(self._conn, self._acc.take_changes())
                await self._conn.execute("COMMIT")
            except BaseException:
                await self._rollback_and_rebuild()
                raise
            await self._run_executions(created)

    async def _apply_one(
        self, item: Prepared, marks: list[tuple[int, bool]], stats: DrainStats
    ) -> list[Execution]:
        event_id = item.event.id
        stats.events += 1
        if item.failure is not None:
            await self._fail(item, item.failure, stats)
            return []
        if not item.ours or item.conversion is None:
            marks.append((event_id, False))
            return []
        stats.ours += 1
        conversion = item.conversion
        await ledger.save_changes_in_txn(self._conn, self._acc.take_changes())
        await self._conn.execute("SAVEPOINT event")
        try:
            tickers: list[str] = []
            for trade in conversion.trades:
                trade_id = await ledger.insert_trade_in_txn(self._conn, event_id, trade)
                if trade_id is None:
                    logger.warning(
                        "trade {}/{} {} already booked", trade.tx_hash, trade.log_index, trade.side
                    )
                    continue
                self._acc.apply_fill(trade_id, trade)
                stats.trades += 1
                if trade.ticker not in tickers:
                    tickers.append(trade.ticker)
            await ledger.insert_skipped_in_txn(
                self._conn, event_id, item.event.inclusion, conversion.skipped
            )
            await ledger.insert_mismatches_in_txn(
                self._conn, event_id, conversion.decimals_mismatches
            )
            was_paused = self.paused
            self._pause_ids.discard(event_id)
            if was_paused and not self.paused:  # _begin will not see the change: re-check here
                logger.info("executions resume: no failed event of ours is left")
                self._recheck.update(p.ticker for p in self._acc.positions())
            created = [e for t in tickers if (e := self._acc.maybe_hedge(t, paused=self.paused))]
            await ledger.save_changes_in_txn(self._conn, self._acc.take_changes())
            await queue.mark_processed_in_txn(self._conn, [(event_id, True)])
            await self._conn.execute("RELEASE event")
        except Exception as exc:
            logger.exception("event {} could not be booked", event_id)
            await self._conn.execute("ROLLBACK TO event")
            await self._conn.execute("RELEASE event")
            await self._rebuild()  # from this transaction's view: every earlier event is in it
            await self._fail(item, f"{type(exc).__name__}: {exc}", stats)
            return []
        stats.executions += len(created)
        return created

    async def _fail(self, item: Prepared, reason: str, stats: DrainStats) -> None:
        ours = item.ours
        await queue.mark_failed_in_txn(self._conn, item.event.id, reason, is_ours=ours)
        stats.failed += 1
        if ours is not False:
            self._pause_ids.add(item.event.id)
        logger.error(
            "event {} (tx {} log {}) failed{}: {}",
            item.event.id,
            item.event.raw.tx_hash,
            item.event.raw.log_index,
            "; new executions paused" if ours is not False else "",
            reason,
        )

    # ------------------------------------------------------------------------------- executions

    async def _run_executions(self, created: list[Execution]) -> None:
        """Place each committed PENDING execution, book the outcome, place what the re-check
        creates, until the broker leaves nothing new."""
        todo = list(created)
        while todo:
            execution = todo.pop(0)
            price = self._acc.reference_price(execution.id)
            logger.info(
                "placing {} {} {} (execution {}, ref price {})",
                execution.direction,
                execution.shares,
                execution.ticker,
                execution.id,
                price,
            )
            request = broker_calls.order_request(execution, price)
            outcome = await broker_calls.place(self._broker, request)
            todo.extend(await self._book(execution, outcome))

    async def _book(self, execution: Execution, outcome: BrokerOutcome) -> list[Execution]:
        """Persist a broker outcome; when the execution ended, re-check its ticker at once."""
        await self._begin()
        try:
            current = self._acc.in_flight(execution.ticker)
            ended = False
            if current is None or current.id != execution.id:
                created: list[Execution] = []
            else:
                ended = broker_calls.apply_outcome(self._acc, current, outcome)
                created = []
                if ended:
                    self._retry_at.pop(execution.id, None)
                    again = self._acc.maybe_hedge(execution.ticker, paused=self.paused)
                    created = [again] if again is not None else []
                else:
                    self._schedule_retry(execution.id)
            await ledger.save_changes_in_txn(self._conn, self._acc.take_changes())
            await self._conn.execute("COMMIT")
        except BaseException:
            await self._rollback_and_rebuild()
            raise
        return created

    def _schedule_retry(self, execution_id: int) -> None:
        attempt = self._retry_at.get(execution_id, (0, 0.0))[0] + 1
        wait = delay_s(
            attempt, base_s=self._options.resolve_base_s, max_s=self._options.resolve_max_s
        )
        self._retry_at[execution_id] = (attempt, time.monotonic() + wait)

    # ------------------------------------------------------------------------------- state

    def _new_accumulator(self, state: ledger.AccumulatorState) -> Accumulator:
        return Accumulator(
            threshold=self._options.threshold_shares,
            max_rejections=self._options.max_rejections,
            instance_id=self.meta.instance_id,
            next_execution_id=state.next_execution_id,
            positions=state.positions,
            lots=state.lots,
            executions=state.executions,
            links=state.links,
        )

    async def _rebuild(self) -> None:
        self._acc = self._new_accumulator(await ledger.load_accumulator_state(self._conn))
        for execution in self._acc.in_flight_executions():
            self._retry_at.setdefault(execution.id, (0, 0.0))

    async def _begin(self) -> None:
        """Open a write transaction and pick up the admin marks (unpark, retry, skip)."""
        await self._conn.execute("BEGIN IMMEDIATE")
        try:
            parked = [p.ticker for p in self._acc.positions() if p.parked]
            unparked = await ledger.unparked_tickers(self._conn) if parked else set()
            for ticker in parked:
                if ticker in unparked:
                    logger.info("{} unparked", ticker)
                    self._acc.unpark(ticker)
                    self._recheck.add(ticker)
            was_paused = self.paused
            self._pause_ids = set(await ledger.pause_event_ids(self._conn))
            if was_paused and not self.paused:
                logger.info("executions resume: no failed event of ours is left")
                self._recheck.update(p.ticker for p in self._acc.positions())
        except BaseException:
            await self._conn.execute("ROLLBACK")
            raise

    async def _rollback_and_rebuild(self) -> None:
        if self._conn.in_transaction:
            await self._conn.execute("ROLLBACK")
        await self._rebuild()
