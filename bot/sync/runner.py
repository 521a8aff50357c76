"""``bot run``: the whole job (SPEC §1, §6, §7); the wiring is :mod:`bot.sync.session`.

run: subscriptions first → cutoff → backfill ``[start, cutoff]`` → drain (hand-off) → live, each
phase announced by one log line. Every live log is written to the queue the moment it arrives;
every head is reconciled before the checkpoint moves; the single consumer drains after each
head. A dropped or silent subscription is reopened and the gap backfilled from the checkpoint.

Provider trouble never ends ``run`` (SPEC §7): an error answer to any call, ``eth_subscribe``
included, a refused connection, a node down for minutes, a failed reconnect: each is waited out
with capped backoff and shown in ``/health`` (503 and why) and ``status``. A failure before the
live phase, or while reconnecting, starts over from the subscription: the backfill resumes from
the checkpoint, so nothing is lost or counted twice. The feed and tasks closed on the way out
are always the current ones.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from loguru import logger

from bot.api.runtime import ApiRuntime, alert_dicts
from bot.chain.subscription import BadMessage, LiveFeed, LiveHead, LiveLog
from bot.config import LoadedConfig, redact_url
from bot.core.abi import ORDERBOOK_TOPICS
from bot.core.heads import Head
from bot.core.retry import delay_s
from bot.errors import FatalError, SubscriptionLost, is_provider_trouble
from bot.metrics import Metrics, MetricsServer
from bot.sync.catch_up import backfill_command
from bot.sync.follower import Follower, LogsAhead
from bot.sync.session import Session
from bot.sync.stopping import step_or_stop

__all__ = ["LiveClock", "Runner", "Session", "backfill_command"]

HOUSEKEEPING_S = 1.0

STOP_GRACE_S = 5.0
"""How long a stop request waits for the live step in progress before cancelling it."""

SUBSCRIBE_TRIES_PER_URL = 3
"""Failed subscription attempts on one WebSocket URL before the next one is tried."""


@dataclass
class LiveClock:
    """When live messages arrived, to measure log → committed trade delay."""

    arrivals: dict[tuple[str, int], tuple[int, float]] = field(default_factory=dict)
    last_head_at: float = field(default_factory=time.monotonic)
    last_head_number: int = -1


class Runner:
    def __init__(self, loaded: LoadedConfig, stop: asyncio.Event) -> None:
        self.metrics = Metrics()
        self.session = Session(loaded, self.metrics, stop)
        self.settings = loaded.settings
        self._stop = stop
        self._clock = LiveClock()
        self._heads: asyncio.Queue[Head] = asyncio.Queue()
        self._first_block: asyncio.Future[int] | None = None
        self._feed: LiveFeed | None = None
        self._tasks: list[asyncio.Task[None]] = []  # the current feed's pump and watchdog
        self._ahead = LogsAhead(self.session.endpoint, self.session.log_filter)  # live reads
        self.api = ApiRuntime(  # the HTTP API and status page (SPEC §10)
            loaded,
            handoff_drained=lambda: self.live,
            chain_head=lambda: (
                self._clock.last_head_number if self._clock.last_head_number >= 0 else None
            ),
            alerts=lambda: alert_dicts(self.session.alerts.last_alerts(20)),
        )
        self._server = MetricsServer(
            self.metrics, self._health, host=self.settings.metrics.host, configure=self.api.install
        )
        self.live = False  # in the live phase, a stop request ends the loop after its step

    def _health(self) -> dict[str, object]:
        age = time.monotonic() - self._clock.last_head_at
        trouble = self.session.trouble
        fresh = age < self.settings.live.stale_after_s * 2
        health: dict[str, object] = {
            "ok": trouble is None and fresh,
            "last_head_age_s": round(age, 1),
            "provider": self.session.endpoint.provider_name,
        }
        if trouble is not None:
            health["reason"] = f"provider trouble: {trouble}"
        elif not fresh:
            health["reason"] = f"no head for {age:.0f} s"
        return health

    async def run(self) -> None:
        session = self.session
        # /health answers (503 and why) while a provider that is down at start is waited out
        await self._server.start(self.settings.metrics.port)
        try:
            await session.open()
            await self.api.open(session.endpoint, session.confirmations)
            await self._main()
        finally:
            await self._disconnect()
            await self._server.stop()
            await self.api.close()
            await session.close()

    async def _main(self) -> None:
        """Connect, catch up, follow; on a lost feed or provider trouble, start over from the
        subscription (the checkpoint says where the backfill resumes)."""
        session = self.session
        failures = 0
        while True:
            try:
                await self._connect()
                if not self.live:
                    cutoff = await self._cutoff()
                    logger.info("cutoff at block {}", cutoff)
                    start = await session.verify_checkpoint()
                    await session.run_backfill(start, cutoff)
                    bound = await session.drain()
                    logger.info("hand-off drained up to block {}", bound)
                    logger.info("live: following heads")
                    self.live = True
                else:
                    await self._catch_up()
                await session.clear_trouble()
                failures = 0
                await self._live()
                return
            except SubscriptionLost as lost:
                logger.warning("subscription lost ({}); reconnecting", lost.reason)
                self.metrics.subscription_reconnects_total.inc()
                if lost.reason is not None and not is_provider_trouble(lost.reason):
                    raise lost.reason from None
            except Exception as exc:
                if not is_provider_trouble(exc):
                    raise
                failures += 1
                wait = delay_s(failures, base_s=0.5, max_s=30)
                logger.warning(
                    "provider trouble ({}: {}); starting over from the subscription in {:.1f} s",
                    type(exc).__name__,
                    exc,
                    wait,
                )
                await session.note_trouble(str(exc) or type(exc).__name__)
                await self._disconnect()
                await session.sleep_or_stop(wait)

    async def _connect(self) -> None:
        """Subscribe (waiting out any trouble) and start the current feed's pump and watchdog."""
        await self._disconnect()
        feed = await self._subscribe()
        self._feed = feed
        self._tasks = [
            asyncio.create_task(self._pump(feed), name="live-hints"),
            asyncio.create_task(self._watch(feed), name="stale-watchdog"),
        ]

    async def _disconnect(self) -> None:
        """Stop the current feed's tasks and close it (never an earlier one)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        feed, self._feed = self._feed, None
        if feed is not None:
            await feed.close()
        self._ahead.clear()

    async def _subscribe(self) -> LiveFeed:
        """Open the feed on the first WebSocket URL that confirms both subscriptions, moving to
        the next one after a few failed attempts and round again, for as long as it takes."""
        loop = asyncio.get_running_loop()
        self._first_block = loop.create_future()
        urls = self.session.subscription_urls
        attempt = 0
        while True:
            url = urls[(attempt // SUBSCRIBE_TRIES_PER_URL) % len(urls)]
            attempt += 1
            try:
                feed = await LiveFeed.open(
                    url,
                    self.settings.orderbook.address,
                    ORDERBOOK_TOPICS,
                    rules=self.session.rules,
                    on_provider_call=self.metrics.rpc_outcome,
                )
            except Exception as exc:
                if not is_provider_trouble(exc):
                    raise
                wait = delay_s(attempt, base_s=0.5, max_s=30)
                logger.warning(
                    "cannot subscribe on {} ({}); retry in {:.1f} s", redact_url(url), exc, wait
                )
                await self.session.note_trouble(f"subscribing on {redact_url(url)}: {exc}")
                await self.session.sleep_or_stop(wait)
                continue
            await self.session.clear_trouble()
            return feed

    async def _catch_up(self) -> None:
        """After a reconnect: backfill the gap from the checkpoint to the head."""
        session = self.session
        # every block after this one comes with a head on the new subscription
        head = await session.calls.block_number()
        start = await session.verify_checkpoint()
        if head >= start:
            logger.info("backfilling the gap {}-{} after the reconnect", start, head)
            await session.run_backfill(start, head)
        await self._drain_and_measure()

    async def _live(self) -> None:
        """Follow heads until a stop request; :class:`SubscriptionLost` when the feed ends."""
        session = self.session
        follower = session.follower()
        follower.ahead = self._ahead
        assert session.store is not None
        pump, watchdog = self._tasks
        retry: Head | None = None
        failures = 0
        while not self._stop.is_set():
            if watchdog.done() and not watchdog.cancelled() and watchdog.exception():
                raise FatalError("the stale-stream watchdog died") from watchdog.exception()
            if pump.done():
                raise SubscriptionLost(None if pump.cancelled() else pump.exception())
            head = retry or await self._next_head()
            retry = None
            try:
                await step_or_stop(self._step(follower, head), self._stop, STOP_GRACE_S)
                if failures:
                    await session.clear_trouble()
                failures = 0
            except Exception as exc:
                if not is_provider_trouble(exc):
                    raise
                # the node is struggling: keep the head, back off, try it again (a service
                # that follows the chain must outlive a provider's bad minutes)
                failures += 1
                retry = head
                wait = delay_s(failures, base_s=0.5, max_s=30)
                logger.warning("live step failed ({}); retrying in {:.1f} s", exc, wait)
                await session.note_trouble(f"live step: {exc}")
                await session.sleep_or_stop(wait)

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
        while True:
            message = await feed.next()
            batch: list[LiveLog] = []
            while True:
                if self.live and not isinstance(message, BadMessage):  # overlaps the commits
                    self._ahead.note(message.log if isinstance(message, LiveLog) else message.head)
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
            except Exception as exc:
                if not is_provider_trouble(exc):
                    raise
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

    async def _step(self, follower: Follower, head: Head | None) -> None:
        """One live step: reconcile the head (if any), then drain what is deep enough."""
        store = self.session.store
        assert store is not None
        if head is not None:
            await follower.on_head(head)
        await self._drain_and_measure()
        if head is not None:  # for `status`; after the drain, as it is no step towards a hedge
            await store.record_head(head)

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
