"""What one ``run``/``backfill`` process holds open (providers, store, engine, lock), and the
rule that provider trouble is waited out, never fatal (SPEC §7).

:meth:`Session.wait_out` retries an operation with capped backoff for as long as it takes,
saying so in the log, in :attr:`Session.trouble` (``/health`` answers 503 with it) and in the
database (``status`` shows it without a network call). Only errors outside
:func:`~bot.errors.is_provider_trouble` (config errors, a database that serves another chain,
fatal invariant breaks) end the process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiosqlite
from loguru import logger

from bot.api.jobs import BackfillJobs, LogSource
from bot.broker.base import Broker
from bot.broker.factory import build_broker
from bot.chain.calls import ChainCalls
from bot.chain.endpoint import RpcRules
from bot.chain.transport import transport_for
from bot.config import DEVNET_CHAIN_ID, LoadedConfig
from bot.core.abi import ORDERBOOK_TOPICS
from bot.core.ranges import BlockRange
from bot.core.retry import delay_s
from bot.core.tokens import SymbolRules
from bot.engine.broker_watch import BrokerWatch
from bot.engine.desk import utc_now
from bot.engine.drain import Engine
from bot.engine.options import engine_options, watch_options
from bot.engine.prepare import Prepared
from bot.errors import ConfigError, TransientError, is_provider_trouble
from bot.metrics import Metrics
from bot.ops.alerts import AlertSink
from bot.ops.monitor import OpsMonitor
from bot.store.chain_state import ChainStore
from bot.store.connection import ServedChain, connect
from bot.store.lock import InstanceLock
from bot.store.runtime import ProviderState, save_provider_state
from bot.sync import ops
from bot.sync.backfill import Backfill, LogFilter, get_header
from bot.sync.follower import Follower

T = TypeVar("T")

TROUBLE_MAX_WAIT_S = 30.0
BACKLOG_CHECK_S = 5.0
"""The longest wait between two tries while a provider is in trouble."""


class Session:
    """Everything one ``run``/``backfill`` process holds open, built by :meth:`open`."""

    def __init__(
        self, loaded: LoadedConfig, metrics: Metrics, stop: asyncio.Event | None = None
    ) -> None:
        self.loaded = loaded
        self.settings = loaded.settings
        self.metrics = metrics
        self.stop = stop or asyncio.Event()
        self.lock = InstanceLock(loaded.database_path)
        s = self.settings
        self.rules = RpcRules(
            breaker_failures=s.rpc.breaker_failures,
            breaker_reset_s=s.rpc.breaker_reset_s,
            requests_per_second=s.rpc.requests_per_second,
        )
        call_urls = [s.chain.rpc_url, *(u for u in s.chain.fallback_urls if u != s.chain.rpc_url)]
        self.endpoint = self.rules.endpoint(
            transport_for(call_urls[0]),
            fallbacks=[transport_for(url) for url in call_urls[1:]],
            batch_blocks=s.backfill.batch_blocks,
            on_provider_call=metrics.rpc_outcome,
        )
        # subscriptions: the ws_url first, then every WebSocket fallback in order (SPEC §7)
        self.subscription_urls = [s.chain.ws_url] + [
            url
            for url in s.chain.fallback_urls
            if url.startswith(("ws://", "wss://")) and url != s.chain.ws_url
        ]
        self.calls = ChainCalls(self.endpoint)
        self.span_policy = self.endpoint.span_policy  # each provider learns its own cap
        self.log_filter = LogFilter(s.orderbook.address, ORDERBOOK_TOPICS)
        self.confirmations = 0
        self.engine: Engine | None = None
        self.broker: Broker | None = None
        self.watch: BrokerWatch | None = None
        self.alerts = AlertSink(s.alerts.webhook_url.get_secret_value())
        self.ops = OpsMonitor(self.alerts, backlog_warn=s.live.backlog_warn)
        self.store: ChainStore | None = None
        self.trouble: str | None = None
        self._runtime: aiosqlite.Connection | None = None
        self._saved: ProviderState | None = None
        self._executions_seen: dict[str, int] = {}

    async def open(self) -> None:
        s = self.settings
        self.lock.acquire()
        await self.alerts.start()
        if self.loaded.database_path.exists():
            # an existing database can show provider trouble at start in `status`
            self._runtime = await connect(self.loaded.database_path)
        chain_id = await self.wait_out("reading the chain id", self.endpoint.check_chain_ids)
        if chain_id != DEVNET_CHAIN_ID and not self.loaded.confirmations_set:
            raise ConfigError(
                f"chain id {chain_id} is not a devnet (31337): set live.confirmations in "
                "config.toml or BOT__LIVE__CONFIRMATIONS (e.g. 12) before running on it"
            )
        self.confirmations = s.live.confirmations or 0
        served = ServedChain(
            chain_id, s.orderbook.address, s.orderbook.order_owner, s.orderbook.deployment_block
        )
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
        self.engine.on_late = self._late_event
        self.store = await ChainStore.open(self.loaded.database_path)
        if self._runtime is None:
            self._runtime = await connect(self.loaded.database_path)
        await self.save_provider_state()
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
        await self.alerts.aclose(grace_s=2.0)
        if self.store is not None:
            await self.store.connection.close()
        if self._runtime is not None:
            await self._runtime.close()
        await self.endpoint.close()
        if self.lock.held:
            self.lock.release()

    # --- provider trouble ------------------------------------------------------------------

    async def wait_out(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        """``operation()``, retried with capped backoff for as long as provider trouble lasts."""
        attempt = 0
        while True:
            try:
                result = await operation()
            except Exception as exc:
                if not is_provider_trouble(exc):
                    raise
                attempt += 1
                wait = delay_s(attempt, base_s=0.5, max_s=TROUBLE_MAX_WAIT_S)
                logger.warning(
                    "provider trouble while {} ({}); waiting {:.1f} s, then trying again "
                    "(attempt {}; this goes on until it answers)",
                    what,
                    exc,
                    wait,
                    attempt,
                )
                await self.note_trouble(f"{what}: {exc}")
                await self.sleep_or_stop(wait)
                continue
            await self.clear_trouble()
            return result

    async def note_trouble(self, reason: str) -> None:
        self.trouble = reason[:500]
        await self.save_provider_state()

    async def clear_trouble(self) -> None:
        if self.trouble is not None:
            logger.info("provider trouble over; {} answers", self.endpoint.provider_name)
            self.trouble = None
        await self.save_provider_state()

    async def save_provider_state(self) -> None:
        """Store the provider in use and the trouble (if any) when either changed."""
        state = ProviderState(self.endpoint.provider_name, self.trouble)
        if self._runtime is None or state == self._saved:
            return
        if await save_provider_state(self._runtime, state):
            self._saved = state

    async def sleep_or_stop(self, seconds: float) -> None:
        """Sleep; a stop request ends the wait with ``CancelledError`` (nothing is half-done)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)
        if self.stop.is_set():
            raise asyncio.CancelledError

    # --- the job's steps -------------------------------------------------------------------

    def backfill(
        self, on_window: Callable[[BlockRange], Awaitable[None]] | None = None
    ) -> Backfill:
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
            on_window=on_window,
        )

    def follower(self) -> Follower:
        assert self.store is not None
        follower = Follower(self.endpoint, self.store, self.log_filter, self.backfill())
        follower.on_reorg = self._reorged
        return follower

    def _reorged(self, depth: int, fork_block: int) -> None:
        self.ops.deep_reorg(depth, fork_block, utc_now())  # alerted when deeper than 3 blocks

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

    async def drain(self, *, up_to: int | None = None) -> int | None:
        """Process what is deep enough; the block bound used (None: no checkpoint yet).

        The bound is ``min(checkpoint, up_to)`` when ``up_to`` is given (``bot backfill``: its
        target is already ``head - confirmations``, SPEC §6), else ``checkpoint -
        confirmations`` (``run``: the checkpoint follows the head)."""
        assert self.engine is not None and self.store is not None
        checkpoint = await self.store.checkpoint()
        if checkpoint is None:
            return None
        if up_to is None:
            bound = checkpoint.number - self.confirmations
        else:
            bound = min(checkpoint.number, up_to)
        if self.watch is not None:
            await self.watch.tick()
        stats = await self.engine.drain(bound)
        self.metrics.events_processed_total.inc(stats.events)
        pending, head = await self._observe_store()
        ops.report(
            self.ops,
            self.engine,
            self.watch,
            stream_trouble=self.trouble,
            head_block=head,
            checkpoint_block=checkpoint.number,
            pending=pending,
        )
        await self.save_provider_state()
        return bound

    def _late_event(self, item: Prepared, tickers: list[str]) -> None:
        raw = item.event.raw
        logger.warning(
            "late event: tx {} log {} in block {} ({}) was found below the processed frontier "
            "(a provider once answered [] for it); booked now, after later fills",
            raw.tx_hash,
            raw.log_index,
            raw.block_number,
            ", ".join(tickers),
        )
        self.ops.late_event(raw.tx_hash, raw.log_index, raw.block_number, tickers[0], utc_now())

    async def rescan(self, first: int, last: int) -> dict[str, Any]:
        """Re-scan ``first..last`` (at or below the checkpoint) into the queue as a backfill job
        would: only what is missing is added, the checkpoint does not move (SPEC §10)."""
        source = LogSource(
            self.endpoint, self.settings.orderbook.address, ORDERBOOK_TOPICS,
            self.settings.backfill.batch_blocks,
        )  # fmt: skip
        jobs = await BackfillJobs.open(self.loaded.database_path, source)
        try:
            started = await jobs.start(first, last)
            done = await jobs.wait(int(started["job_id"]))
        finally:
            await jobs.close()
        assert done is not None
        if done["state"] != "done":
            raise TransientError(
                f"re-scan of blocks {first}-{last} {done['state']}: {done['error']}"
            )
        logger.info(
            "re-scan of blocks {}-{}: {} events found, {} missing ones added",
            first,
            last,
            done["events_found"],
            done["events_added"],
        )
        return done

    async def _watch_backlog(self, end: int) -> None:
        assert self.store is not None
        while True:
            await asyncio.sleep(BACKLOG_CHECK_S)
            rows = await self.store.connection.execute_fetchall(
                "SELECT COUNT(*) FROM events WHERE status = 'pending' AND block_number > ?",
                (end,),
            )
            self.ops.backlog(int(str(next(iter(rows))[0])), backfilling=True)

    async def _observe_store(self) -> tuple[int, int | None]:
        """queue_depth and executions_total{status} from the database (terminal counts only
        grow, so their increase is the counter's); returns (pending events, last head)."""
        assert self.store is not None
        conn = self.store.connection
        rows = await conn.execute_fetchall(
            "SELECT (SELECT COUNT(*) FROM events WHERE status = 'pending'),"
            " (SELECT value FROM meta WHERE key = 'head_block')"
        )
        pending_text, head_text = next(iter(rows))
        pending = int(str(pending_text))
        self.metrics.queue_depth.set(pending)
        counts = await conn.execute_fetchall(
            "SELECT status, COUNT(*) FROM executions GROUP BY status"
        )
        for status, count in counts:
            seen = self._executions_seen.get(str(status), 0)
            if int(str(count)) > seen:
                self.metrics.executions_total.labels(status=str(status)).inc(int(str(count)) - seen)
                self._executions_seen[str(status)] = int(str(count))
        return pending, None if head_text is None else int(str(head_text))

    async def run_backfill(
        self,
        start: int,
        end: int,
        *,
        head: int | None = None,
        on_window: Callable[[BlockRange], Awaitable[None]] | None = None,
    ) -> int:
        """Backfill ``start..end``; returns the events fetched. Meanwhile, live events waiting
        above ``end`` beyond ``live.backlog_warn`` are warned about (SPEC §10)."""
        watcher = asyncio.create_task(self._watch_backlog(end), name="backlog-watch")
        try:
            result = await self.backfill(on_window).run(start, end, head=head)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            self.ops.backlog(0, backfilling=False)
        self.metrics.events_enqueued_total.labels(source="backfill").inc(result.stored)
        logger.info(
            "backfill done: blocks {}-{}, {} events in {:.1f} s",
            start,
            end,
            result.events,
            result.seconds,
        )
        return result.events
