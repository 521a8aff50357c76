"""The ordered drain (SPEC §1, §4, §5, §8): one consumer from the queue to the broker.

A **drain pass** (:meth:`Engine.drain`) reads its bound once and books every pending event at or
below it in large atomic batches (trades, lots, positions and processed marks commit together).
Hedges are decided at the end of the pass, **in the same transaction as its last batch**, from
the net unhedged position of each ticker: one execution per ticker with nothing in flight and
no blocking reason. So a backlog of any length becomes at most one order per ticker, and a live
fill is hedged right after its block is drained. Each PENDING execution is committed before its
broker call; the outcome is booked in the next transaction. In-flight executions are followed
after the pass has booked and hedged (a live fill never waits behind broker polls of earlier
orders); one that ends then re-checks its ticker at once. Rows of other owners never reach the
drain: they are stored processed (:mod:`bot.store.queue`). The in-memory accumulator is persisted
(``take_changes()``) in the same transactions and rebuilt from the database whenever one rolls
back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import partial
from pathlib import Path

import aiosqlite
from loguru import logger

from bot.broker.base import Broker
from bot.chain.reader import ChainReader
from bot.core.accumulator import Accumulator
from bot.core.blocking import Block, Blocks, Reason
from bot.core.lots import Execution
from bot.core.tokens import SymbolRules
from bot.engine.booking import plan_batch
from bot.engine.compensation import book_compensations_in_txn
from bot.engine.desk import Desk, DeskOptions, utc_now
from bot.engine.prepare import Prepared, Preparer, RetryPolicy
from bot.errors import TransientError
from bot.store import ledger, queue
from bot.store.connection import ServedChain, StoreMeta, open_database

DEFAULT_BATCH_SIZE = 2000


@dataclass(frozen=True, slots=True)
class EngineOptions:
    threshold_shares: Decimal | int = 1  # SPEC §4
    max_rejections: int = 3
    batch_size: int = DEFAULT_BATCH_SIZE
    rpc_retry: RetryPolicy = field(default_factory=RetryPolicy)
    desk: DeskOptions = field(default_factory=DeskOptions)


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
        blocks: Blocks | None = None,
    ) -> None:
        self._conn = conn
        self.meta = meta
        self._options = options
        self.blocks = blocks or Blocks()
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
        self.desk = Desk(self, broker, options.desk)
        self._frontier = -1  # the highest block of a processed event of ours (SPEC §10: late)
        self.on_late: Callable[[Prepared, list[str]], None] | None = None
        self._late: list[tuple[Prepared, list[str]]] = []  # reported once committed

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
        blocks: Blocks | None = None,
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
                blocks=blocks,
            )
            engine._preparer._tokens.update(await ledger.load_tokens(conn))
            await engine.rebuild()
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
        in-flight execution resolved with the broker (an unknown outcome stays in flight).
        Returns how many failed events were re-queued."""
        retried = await queue.retry_failed(self._conn)
        if retried:
            logger.info("retrying {} failed event(s)", retried)
        await self.desk.resolve_at_startup()
        return retried

    # ------------------------------------------------------------------------------- drain

    async def drain(self, up_to_block: int, *, hedge: bool = True) -> DrainStats:
        """One pass: book every pending event at or below ``up_to_block`` in (block, log_index)
        order, then decide the hedges. Also acts on admin marks (retry, skip, unpark) and
        follows in-flight executions; call it periodically even when nothing new arrived.

        ``hedge=False`` books without deciding: a pass that runs while a catch-up is still
        fetching leaves the hedge to the pass after it, so the backlog stays one order per
        ticker."""
        stats = DrainStats()
        await self.transaction(self._compensate)
        rows = await self._conn.execute_fetchall(
            "SELECT COALESCE(MAX(block_number), -1) FROM events INDEXED BY events_ours_processed"
            " WHERE status = 'processed' AND is_ours = 1"
        )
        self._frontier = int(next(iter(rows))[0])
        limit = self._options.batch_size
        while True:
            # only the rows that may be ours are pending (the others are stored processed); one
            # more than a batch, so the last batch is known and takes the decision along
            events = await queue.pending_events(
                self._conn, up_to_block=up_to_block, limit=limit + 1
            )
            last = len(events) <= limit
            prepared = [await self._preparer.prepare(event) for event in events[:limit]]
            created = await self._book(prepared, stats, decide=last and hedge)
            if last:
                break
            logger.info(
                "drain: booked {} events up to block {} ({} of ours so far), more pending",
                stats.events,
                prepared[-1].event.raw.block_number,
                stats.ours,
            )
        stats.executions += len(created)
        await self.desk.run(created)
        # in-flight executions are asked about after booking, so a new fill never waits behind
        # broker polls of earlier orders; one that ends now re-checks its ticker at once (but
        # not in a pass that leaves the hedge to a later one)
        await self.desk.follow_due(recheck_now=hedge)
        return stats

    async def _compensate(self) -> list[Execution]:
        # reorged events first: their compensations precede anything still pending (§7)
        await book_compensations_in_txn(self._conn, self._acc)
        return []

    async def _book(
        self, prepared: list[Prepared], stats: DrainStats, *, decide: bool
    ) -> list[Execution]:
        """Book a batch in one transaction: all at once, or — when something in it fails —
        again event by event, where a bad event is isolated and marked failed."""
        batch = DrainStats()
        try:
            created = await self.transaction(partial(self._book_at_once, prepared, batch, decide))
        except TransientError:
            raise
        except Exception as exc:
            logger.warning("a batch could not be booked at once ({}): event by event", exc)
            self._late = []
            batch = DrainStats()
            created = await self.transaction(partial(self._book_batch, prepared, batch, decide))
        for name in ("events", "ours", "failed", "trades"):
            setattr(stats, name, getattr(stats, name) + getattr(batch, name))
        late, self._late = self._late, []
        for item, tickers in late:  # reported once committed
            if self.on_late is not None:
                self.on_late(item, tickers)
        return created

    async def _book_at_once(
        self, prepared: list[Prepared], stats: DrainStats, decide: bool
    ) -> list[Execution]:
        rows = plan_batch(
            prepared,
            self._acc,
            next_trade_id=await ledger.next_trade_id(self._conn),
            frontier=self._frontier,
        )
        await ledger.insert_trades_in_txn(self._conn, rows.trades)
        for event_id, inclusion, skipped in rows.skipped:
            await ledger.insert_skipped_in_txn(self._conn, event_id, inclusion, [skipped])
        for event_id, mismatch in rows.mismatches:
            await ledger.insert_mismatches_in_txn(self._conn, event_id, [mismatch])
        for item in rows.failures:
            await self._fail(item, item.failure or "", stats)
        await queue.mark_processed_in_txn(self._conn, rows.processed)
        self._pause_ids.difference_update(rows.ours)
        self._late = rows.late
        stats.events += rows.counts.events
        stats.ours += rows.counts.ours
        stats.trades += rows.counts.trades
        return self.decide_hedges() if decide else []

    async def _book_batch(
        self, prepared: list[Prepared], stats: DrainStats, decide: bool
    ) -> list[Execution]:
        marks: list[tuple[int, bool]] = []
        for item in prepared:
            await self._book_one(item, marks, stats)
        await queue.mark_processed_in_txn(self._conn, marks)
        return self.decide_hedges() if decide else []

    async def _book_one(
        self, item: Prepared, marks: list[tuple[int, bool]], stats: DrainStats
    ) -> None:
        event_id = item.event.id
        stats.events += 1
        if item.failure is not None:
            await self._fail(item, item.failure, stats)
            return
        if not item.ours or item.conversion is None:
            marks.append((event_id, False))
            return
        stats.ours += 1
        conversion = item.conversion
        await ledger.save_changes_in_txn(self._conn, self._acc.take_changes())
        await self._conn.execute("SAVEPOINT event")
        try:
            late = item.event.raw.block_number < self._frontier
            booked: list[str] = []
            for trade in conversion.trades:
                trade_id = await ledger.insert_trade_in_txn(self._conn, event_id, trade, late=late)
                if trade_id is None:
                    logger.warning(
                        "trade {}/{} {} already booked", trade.tx_hash, trade.log_index, trade.side
                    )
                    continue
                self._acc.apply_fill(trade_id, trade)
                booked.append(trade.ticker)
                stats.trades += 1
            if late and booked:
                self._late.append((item, booked))
            await ledger.insert_skipped_in_txn(
                self._conn, event_id, item.event.inclusion, conversion.skipped
            )
            await ledger.insert_mismatches_in_txn(
                self._conn, event_id, conversion.decimals_mismatches
            )
            self._pause_ids.discard(event_id)
            await ledger.save_changes_in_txn(self._conn, self._acc.take_changes())
            await queue.mark_processed_in_txn(self._conn, [(event_id, True)])
            await self._conn.execute("RELEASE event")
        except TransientError:
            raise  # not this event's fault (a queue race, a busy database): the batch is retried
        except Exception as exc:
            logger.exception("event {} could not be booked", event_id)
            await self._conn.execute("ROLLBACK TO event")
            await self._conn.execute("RELEASE event")
            await self.rebuild()  # from this transaction's view: every earlier event is in it
            await self._fail(item, f"{type(exc).__name__}: {exc}", stats)

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

    # ------------------------------------------------------------------------------- hedges

    def blocking(self, ticker: str, now: datetime) -> Block | None:
        """Why no new execution may start for ``ticker`` now (SPEC §4), or ``None``."""
        if self.paused:
            return Block("*", Reason.PAUSED, "an event of ours failed", now)
        position = self._acc.position(ticker)
        if position is not None and position.parked:
            return Block(ticker, Reason.PARKED, "rejected too often: `bot unpark`", now)
        return self.blocks.blocking(ticker, now)

    def blocking_reasons(self, now: datetime) -> list[Block]:
        """Every blocking reason in force (SPEC §4's one set, for ``status``)."""
        found = []
        if self.paused:
            found.append(Block("*", Reason.PAUSED, "an event of ours failed: see status", now))
        found += [
            Block(p.ticker, Reason.PARKED, "rejected too often: `bot unpark`", now)
            for p in self._acc.positions()
            if p.parked
        ]
        return found + self.blocks.active(now)

    def decide_hedges(self, tickers: list[str] | None = None) -> list[Execution]:
        """Inside a write transaction: one execution per ticker that needs one (SPEC §4)."""
        now = utc_now()
        self.blocks.expire(now)
        created: list[Execution] = []
        names = tickers if tickers is not None else [p.ticker for p in self._acc.positions()]
        for ticker in names:
            if self.blocking(ticker, now) is not None:
                continue
            fractional, broker_long = self.desk.fractional_terms(ticker)
            execution = self._acc.maybe_hedge(
                ticker, fractional=fractional, broker_long=broker_long, now=now
            )
            if execution is not None:
                created.append(execution)
        return created

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

    async def rebuild(self) -> None:
        self._acc = self._new_accumulator(await ledger.load_accumulator_state(self._conn))

    async def transaction(self, body: Callable[[], Awaitable[list[Execution]]]) -> list[Execution]:
        """Run ``body()`` (async, returning created executions) in one write transaction that
        also picks up the admin marks and persists the accumulator's changes."""
        await self._begin()
        try:
            created = await body()
            await ledger.save_changes_in_txn(self._conn, self._acc.take_changes())
            await self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                await self._conn.execute("ROLLBACK")
            await self.rebuild()
            raise
        return created

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
                    self.blocks.clear(ticker, Reason.REJECTION_BACKOFF)
            was_paused = self.paused
            self._pause_ids = set(await ledger.pause_event_ids(self._conn))
            if was_paused and not self.paused:
                logger.info("executions resume: no failed event of ours is left")
        except BaseException:
            await self._conn.execute("ROLLBACK")
            raise
