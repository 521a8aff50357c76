"""``bot run`` and ``bot backfill``: the whole job (SPEC §1, §6, §7).

run: subscriptions first → cutoff → backfill ``[start, cutoff]`` → drain (hand-off) → live, each
phase announced by one log line. Every live log is written to the queue the moment it arrives;
every head is reconciled before the checkpoint moves; the single consumer drains after each
head. A dropped or silent subscription is reopened and the gap backfilled from the checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from loguru import logger

from bot.api.runtime import ApiRuntime  # api:
from bot.broker.base import Broker
from bot.broker.factory import build_broker
from bot.chain.calls import ChainCalls
from bot.chain.endpoint import Endpoint
from bot.chain.subscription import BadMessage, LiveFeed, LiveHead, LiveLog
from bot.chain.transport import transport_for
from bot.config import DEVNET_CHAIN_ID, LoadedConfig, redact_url
from bot.core.abi import ORDERBOOK_TOPICS
from bot.core.heads import Head
from bot.core.ranges import SpanPolicy
from bot.core.retry import delay_s
from bot.core.tokens import SymbolRules
from bot.engine.broker_watch import BrokerWatch
from bot.engine.drain import Engine
from bot.engine.options import engine_options, watch_options
from bot.errors import ConfigError, FatalError, TransientError
from bot.metrics import Metrics, MetricsServer
from bot.store.chain_state import ChainStore
from bot.store.connection import ServedChain, connect
from bot.store.lock import InstanceLock
from bot.sync.backfill import Backfill, LogFilter, get_header
from bot.sync.follower import Follower

HOUSEKEEPING_S = 1.0


@dataclass
class LiveClock:
    """When live messages arrived, to measure log → committed trade delay."""

    arrivals: dict[tuple[str, int], tuple[int, float]] = field(default_factory=dict)
    last_head_at: float = field(default_factory=time.monotonic)
    last_head_number: int = -1


class Session:
    """Everything one ``run``/``backfill`` process holds open, built by :meth:`open`."""

    def __init__(self, loaded: LoadedConfig, metrics: Metrics) -> None:
        self.loaded = loaded
        self.settings = loaded.settings
        self.metrics = metrics
        self.lock = InstanceLock(loaded.database_path)
        s = self.settings
        self.endpoint = Endpoint(
            transport_for(s.chain.rpc_url),
            breaker_failures=s.rpc.breaker_failures,
            breaker_reset_s=s.rpc.breaker_reset_s,
            requests_per_second=s.rpc.requests_per_second,
            on_call=metrics.rpc_outcome,
        )
        self.calls = ChainCalls(self.endpoint)
        self.span_policy = SpanPolicy(s.backfill.batch_blocks)  # one per provider
        self.log_filter = LogFilter(s.orderbook.address, ORDERBOOK_TOPICS)
        self.confirmations = 0
        self.engine: Engine | None = None
        self.broker: Broker | None = None
        self.watch: BrokerWatch | None = None
        self.store: ChainStore | None = None
        self._executions_seen: dict[str, int] = {}

    async def open(self) -> None:
        s = self.settings
        self.lock.acquire()
        chain_id = await self.calls.chain_id()
        if chain_id != DEVNET_CHAIN_ID and not self.loaded.confirmations_set:
            raise ConfigError(
                f"chain id {chain_id} is not a devnet (31337): set live.confirmations in "
                "config.toml or BOT__LIVE__CONFIRMATIONS (e.g. 12) before running on it"
            )
        self.confirmations = s.live.confirmations or 0
        served = ServedChain(
            chain_id, s.orderbook.address, s.orderbook.order_owner, s.orderbook.deployment_block
        )
        # broker: built by the factory from config
        self.broker = build_broker(s)
        self.engine = await Engine.open(
            self.loaded.database_path,
            served,
            broker=self.broker,
            chain=self.calls,
            rules=SymbolRules(
                s.accumulator.stablecoins,
                s.accumulator.equity_suffixes,
                s.accumulator.equity_prefixes,
            ),
            options=engine_options(s),
        )
        self.watch = BrokerWatch(self.engine, self.broker, watch_options(s))
        self.store = ChainStore(await connect(self.loaded.database_path))
        await self.watch.start()  # keys, broker identity, inherited positions, the clock
        retried = await self.engine.start()
        logger.info(
            "database {} ready (chain {}, orderbook {}, confirmations {}); {} failed event(s) "
            "re-queued, in-flight executions resolved",
            self.loaded.database_path,
            chain_id,
            s.orderbook.address,
            self.confirmations,
            retried,
        )

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.close()
        if self.broker is not None:
            await self.broker.aclose()
        if self.store is not None:
            await self.store.connection.close()
        await self.endpoint.close()
        self.lock.release()

    def backfill(self) -> Backfill:
        assert self.store is not None
        return Backfill(
            self.endpoint,
            self.store,
            self.log_filter,
            workers=self.settings.backfill.workers,
            batch_blocks=self.settings.backfill.batch_blocks,
            near_head_blocks=self.confirmations + 2,
            metrics=self.metrics,
            policy=self.span_policy,
        )

    def follower(self) -> Follower:
        assert self.store is not None
        return Follower(self.endpoint, self.store, self.log_filter, self.backfill())

    async def verify_checkpoint(self) -> int:
        """The first block to backfill: after the checkpoint, whose hash is re-checked first
        (a changed hash is a reorg while we were away: roll back to the fork point)."""
        assert self.store is not None
        checkpoint = await self.store.checkpoint()
        if checkpoint is None:
            return self.settings.orderbook.deployment_block
        header = await get_header(self.endpoint, checkpoint.number)
        if header.hash != checkpoint.hash:
            logger.warning(
                "checkpoint block {} changed hash while we were away: reorg", checkpoint.number
            )
            await self.follower().on_head(header)
            checkpoint = await self.store.checkpoint()
            assert checkpoint is not None
        return checkpoint.number + 1

    async def drain(self) -> int | None:
        """Process what is deep enough; the block bound used (None: no checkpoint yet)."""
        assert self.engine is not None and self.store is not None
        checkpoint = await self.store.checkpoint()
        if checkpoint is None:
            return None
        bound = checkpoint.number - self.confirmations
        if self.watch is not None:
            await self.watch.tick()
        stats = await self.engine.drain(bound)
        self.metrics.events_processed_total.inc(stats.events)
        await self._observe_store()
        return bound

    async def _observe_store(self) -> None:
        """queue_depth and executions_total{status} from the database (terminal counts only
        grow, so their increase is the counter's)."""
        assert self.store is not None
        conn = self.store.connection
        rows = await conn.execute_fetchall("SELECT COUNT(*) FROM events WHERE status = 'pending'")
        self.metrics.queue_depth.set(int(str(next(iter(rows))[0])))
        counts = await conn.execute_fetchall(
            "SELECT status, COUNT(*) FROM executions GROUP BY status"
        )
        for status, count in counts:
            seen = self._executions_seen.get(str(status), 0)
            if int(str(count)) > seen:
                self.metrics.executions_total.labels(status=str(status)).inc(int(str(count)) - seen)
                self._executions_seen[str(status)] = int(str(count))

    async def run_backfill(self, start: int, end: int, *, head: int | None = None) -> int:
        """Backfill ``start..end``; returns the events fetched."""
        result = await self.backfill().run(start, end, head=head)
        self.metrics.events_enqueued_total.labels(source="backfill").inc(result.stored)
        logger.info(
            "backfill done: blocks {}-{}, {} events in {:.1f} s",
            start,
            end,
            result.events,
            result.seconds,
        )
        return result.events


async def backfill_command(loaded: LoadedConfig, to_block: int | None) -> dict[str, int | None]:
    """``bot backfill [--to M]``: catch up to M (default head - confirmations), process, exit."""
    session = Session(loaded, Metrics())
    await session.open()
    try:
        head = await session.calls.block_number()
        end = head - session.confirmations if to_block is None else to_block
        start = await session.verify_checkpoint()
        events = await session.run_backfill(start, end, head=head)
        bound = await session.drain()
        return {"from": start, "to": end, "events": events, "processed_up_to": bound}
    finally:
        await session.close()


class Runner:
    def __init__(self, loaded: LoadedConfig, stop: asyncio.Event) -> None:
        self.metrics = Metrics()
        self.session = Session(loaded, self.metrics)
        self.settings = loaded.settings
        self._stop = stop
        self._clock = LiveClock()
        self._heads: asyncio.Queue[Head] = asyncio.Queue()
        self._first_block: asyncio.Future[int] | None = None
        self.api = ApiRuntime(  # api: the HTTP API and status page (SPEC §10)
            loaded,
            handoff_drained=lambda: self.live,
            chain_head=lambda: (
                self._clock.last_head_number if self._clock.last_head_number >= 0 else None
            ),
        )
        self._server = MetricsServer(
            self.metrics, self._health, host=self.settings.metrics.host, configure=self.api.install
        )  # api:
        self.live = False  # in the live phase, a stop request ends the loop after its step

    def _health(self) -> dict[str, object]:
        age = time.monotonic() - self._clock.last_head_at
        return {"ok": age < self.settings.live.stale_after_s * 2, "last_head_age_s": round(age, 1)}

    async def run(self) -> None:
        session = self.session
        await session.open()
        await self._server.start(self.settings.metrics.port)
        try:
            await self.api.open(session.endpoint, session.confirmations)  # api:
            await self._main()
        finally:
            await self._server.stop()
            await self.api.close()  # api:
            await session.close()

    async def _main(self) -> None:
        session = self.session
        assert session.store is not None
        feed = await self._subscribe()
        hints = asyncio.create_task(self._pump(feed), name="live-hints")
        watchdog = asyncio.create_task(self._watch(feed), name="stale-watchdog")
        try:
            cutoff = await self._cutoff()
            logger.info("cutoff at block {}", cutoff)
            start = await session.verify_checkpoint()
            await session.run_backfill(start, cutoff)
            bound = await session.drain()
            logger.info("hand-off drained up to block {}", bound)
            logger.info("live: following heads")
            self.live = True
            await self._live(feed, hints, watchdog)
        finally:
            for task in (hints, watchdog):
                task.cancel()
            await asyncio.gather(hints, watchdog, return_exceptions=True)
            await feed.close()

    async def _subscribe(self) -> LiveFeed:
        loop = asyncio.get_running_loop()
        self._first_block = loop.create_future()
        attempt = 0
        while True:
            attempt += 1
            try:
                return await LiveFeed.open(
                    self.settings.chain.ws_url,
                    self.settings.orderbook.address,
                    ORDERBOOK_TOPICS,
                )
            except TransientError as exc:
                wait = delay_s(attempt, base_s=0.5, max_s=30)
                logger.warning(
                    "cannot subscribe on {} ({}); retry in {:.1f} s",
                    redact_url(self.settings.chain.ws_url),
                    exc,
                    wait,
                )
                await self._sleep_or_stop(wait)

    async def _sleep_or_stop(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
        if self._stop.is_set():
            raise asyncio.CancelledError

    async def _cutoff(self) -> int:
        assert self._first_block is not None
        timeout = self.settings.live.first_event_timeout_s
        try:
            return await asyncio.wait_for(asyncio.shield(self._first_block), timeout)
        except TimeoutError:
            head = await self.session.calls.block_number()
            logger.info("no live event in {} s: cutoff = current head", timeout)
            return head

    async def _pump(self, feed: LiveFeed) -> None:
        """Move live messages into the queue at once (logs) or to the follower (heads)."""
        store = self.session.store
        assert store is not None
        while True:
            message = await feed.next()
            batch: list[LiveLog] = []
            while True:
                if isinstance(message, LiveLog):
                    batch.append(message)
                elif isinstance(message, LiveHead):
                    await self._store_logs(batch)
                    batch = []
                    self._on_head(message)
                else:
                    await self._store_logs(batch)
                    batch = []
                    await self._dead_letter(message)
                if not feed.backlog():
                    break
                message = await feed.next()
            await self._store_logs(batch)

    async def _store_logs(self, batch: list[LiveLog]) -> None:
        if not batch:
            return
        store = self.session.store
        assert store is not None
        inserted = await store.store_hint([item.log for item in batch])
        self.metrics.events_enqueued_total.labels(source="live").inc(inserted)
        for item in batch:
            key = (item.log.tx_hash, item.log.log_index)
            self._clock.arrivals.setdefault(key, (item.log.block_number, item.received_at))
        self._first(batch[0].log.block_number)

    def _first(self, block: int) -> None:
        if self._first_block is not None and not self._first_block.done():
            self._first_block.set_result(block)

    def _on_head(self, message: LiveHead) -> None:
        head = message.head
        self._clock.last_head_at = message.received_at
        self._clock.last_head_number = max(self._clock.last_head_number, head.number)
        self._first(head.number)
        self._heads.put_nowait(head)

    async def _dead_letter(self, message: BadMessage) -> None:
        store = self.session.store
        assert store is not None
        logger.error("undecodable live message kept as a dead letter: {}", message.reason)
        await store.dead_letter("subscription", message.payload, message.reason)

    async def _watch(self, feed: LiveFeed) -> None:
        """A subscription silent while the chain advances is treated as dropped (SPEC §7).

        It must never die quietly (a silently dead watchdog is how a stream stays dead for
        days): a failed check is logged and tried again at the next tick."""
        stale_after = self.settings.live.stale_after_s
        behind_since: float | None = None  # when the chain was first seen past our last head
        while not feed.closed:
            try:
                if self._clock.last_head_number < 0:  # no head yet: the chain as we subscribed
                    self._clock.last_head_number = await self.session.calls.block_number()
                await asyncio.sleep(min(5.0, stale_after / 4))
                head = await self.session.calls.block_number()
            except TransientError as exc:
                logger.warning("stale-stream check failed ({}); checking again", exc)
                await asyncio.sleep(min(5.0, stale_after / 4))
                continue
            if head <= self._clock.last_head_number:
                behind_since = None  # caught up, or a quiet devnet: not stale
                self._clock.last_head_at = time.monotonic()
                continue
            now = time.monotonic()
            behind_since = now if behind_since is None else behind_since
            # quiet time before the chain moved does not count (its first block would look
            # stale for the few ms before its head arrives)
            silent_s = now - max(behind_since, self._clock.last_head_at)
            if silent_s >= stale_after:
                logger.warning(
                    "no head for {:.0f} s while the chain reached block {}: stale subscription",
                    silent_s,
                    head,
                )
                await feed.close()
                return

    async def _live(
        self, feed: LiveFeed, hints: asyncio.Task[None], watchdog: asyncio.Task[None]
    ) -> None:
        session = self.session
        follower = session.follower()
        assert session.store is not None
        retry: Head | None = None
        failures = 0
        while not self._stop.is_set():
            if watchdog.done() and not watchdog.cancelled() and watchdog.exception():
                raise FatalError("the stale-stream watchdog died") from watchdog.exception()
            if hints.done():
                feed, hints, watchdog = await self._reconnect(feed, hints, watchdog)
                continue
            head = retry or await self._next_head()
            retry = None
            try:
                if head is not None:
                    await session.store.record_head(head)
                    await follower.on_head(head)
                await self._drain_and_measure()
                failures = 0
            except TransientError as exc:
                # the node is struggling: keep the head, back off, try it again (a service
                # that follows the chain must outlive a provider's bad minutes)
                failures += 1
                retry = head
                wait = delay_s(failures, base_s=0.5, max_s=30)
                logger.warning("live step failed ({}); retrying in {:.1f} s", exc, wait)
                await self._sleep_or_stop(wait)

    async def _next_head(self) -> Head | None:
        if not self._heads.empty():
            return self._heads.get_nowait()
        getter = asyncio.ensure_future(self._heads.get())
        stopper = asyncio.ensure_future(self._stop.wait())
        done, pending = await asyncio.wait(
            {getter, stopper}, timeout=HOUSEKEEPING_S, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()
        return getter.result() if getter in done else None

    async def _drain_and_measure(self) -> None:
        bound = await self.session.drain()
        if bound is None:
            return
        now = time.monotonic()
        done = [key for key, (block, _at) in self._clock.arrivals.items() if block <= bound]
        for key in done:
            _block, arrived = self._clock.arrivals.pop(key)
            self.metrics.live_log_to_trade_seconds.observe(now - arrived)
        checkpoint = bound + self.session.confirmations
        self.metrics.head_lag_blocks.set(max(0, self._clock.last_head_number - checkpoint))

    async def _reconnect(
        self, feed: LiveFeed, hints: asyncio.Task[None], watchdog: asyncio.Task[None]
    ) -> tuple[LiveFeed, asyncio.Task[None], asyncio.Task[None]]:
        reason = hints.exception() if not hints.cancelled() else None
        logger.warning("subscription lost ({}); reconnecting", reason)
        watchdog.cancel()
        await asyncio.gather(watchdog, return_exceptions=True)
        await feed.close()
        self.metrics.subscription_reconnects_total.inc()
        if reason is not None and not isinstance(reason, TransientError):
            raise reason
        feed = await self._subscribe()
        hints = asyncio.create_task(self._pump(feed), name="live-hints")
        watchdog = asyncio.create_task(self._watch(feed), name="stale-watchdog")
        # every block after this one comes with a head on the new subscription
        head = await self.session.calls.block_number()
        start = await self.session.verify_checkpoint()
        if head >= start:
            logger.info("backfilling the gap {}-{} after the reconnect", start, head)
            await self.session.run_backfill(start, head)
        await self._drain_and_measure()
        return feed, hints, watchdog
