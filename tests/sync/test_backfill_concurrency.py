"""Every worker busy, adaptive concurrency and a bounded writer queue (issue 9), on real anvil.

A ~650-block history with fills behind a loopback JSON-RPC proxy the test controls; the backfill
is the real ``Backfill`` writing through a real ``ChainStore`` to SQLite, and its queue and
checkpoint must equal a clean run's.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.chain.endpoint import Endpoint
from bot.chain.transport import HttpTransport
from bot.core.abi import ORDERBOOK_TOPICS
from bot.core.heads import Head
from bot.core.model import RawLog
from bot.metrics import Metrics
from bot.store.chain_state import ChainStore
from bot.store.connection import ServedChain, open_database
from bot.sync.backfill import Backfill, BackfillSink, LogFilter
from tests.support.history import (
    History,
    Outcome,
    backfill_history,
    build_history,
    wait_until,
)
from tests.support.proxies import RecordedCall, RpcProxy

GATE_TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    """~650 blocks with fills in four clusters (cheap: anvil_mine is fast near block 0)."""
    with build_history(
        tmp_path_factory.mktemp("concurrency") / "anvil.log",
        seed=9,
        fills=48,
        chunks=4,
        gap_blocks=150,
    ) as built:
        yield built


@pytest.fixture(scope="module")
def clean(history: History, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    database = tmp_path_factory.mktemp("clean") / "bot.db"
    outcome = asyncio.run(
        backfill_history(history, database, history.anvil.http_url, workers=1, batch_blocks=10_000)
    )
    assert len(outcome.rows) == history.events > 50
    return outcome


def ranged(call: RecordedCall) -> bool:
    return call.block_range is not None


class GatheringProxy(RpcProxy):
    """Holds every ranged ``eth_getLogs`` after the first (the backfill's probe of the chain's
    density, sent alone) until ``expected`` of them are waiting together (or a deadline
    passes): all were in flight at once exactly when the gate opened."""

    def __init__(self, upstream_url: str, expected: int) -> None:
        super().__init__(upstream_url)
        self.expected = expected
        self.ranged = 0
        self.waiting = 0
        self.most_waiting = 0
        self._all_there = asyncio.Event()

    async def _handle(self, request: web.Request) -> web.Response:
        payload = json.loads(await request.read())  # aiohttp caches the body for super()
        params = payload.get("params") if isinstance(payload, dict) else None
        if not (params and payload.get("method") == "eth_getLogs" and "fromBlock" in params[0]):
            return await super()._handle(request)
        self.ranged += 1
        if self.ranged == 1:
            return await super()._handle(request)
        self.waiting += 1
        self.most_waiting = max(self.most_waiting, self.waiting)
        if self.waiting >= self.expected:
            self._all_there.set()
        try:
            await asyncio.wait_for(self._all_there.wait(), GATE_TIMEOUT_S)
        except TimeoutError:
            pass  # fewer came: most_waiting tells, the backfill goes on
        finally:
            self.waiting -= 1
        return await super()._handle(request)


@pytest.mark.parametrize("workers", [3, 4])
async def test_a_small_range_keeps_every_worker_busy(
    history: History, clean: Outcome, tmp_path: Path, workers: int
) -> None:
    """~650 blocks with 1,000-block windows was one window for all the workers."""
    proxy = await GatheringProxy(history.anvil.http_url, expected=workers).start()
    try:
        outcome = await backfill_history(
            history, tmp_path / "bot.db", proxy.url, workers=workers, batch_blocks=1000
        )
    finally:
        await proxy.stop()
    probe, *windows = [call.block_range for call in proxy.get_logs_calls() if ranged(call)]
    assert probe is not None and probe[0] == history.start
    ranged_blocks = sum(end - start + 1 for start, end in windows)
    share = -(-(ranged_blocks + probe[1] - probe[0] + 1) // workers)
    assert probe[1] - probe[0] + 1 == share // workers  # a slice of one share, alone
    # then the rest, shared again: one window for each worker
    assert len(windows) == workers
    again = -(-ranged_blocks // workers)
    assert all(end - start + 1 <= again for start, end in windows)
    assert proxy.most_waiting == workers  # all in flight at once
    assert outcome == clean


class RateLimitingProxy(RpcProxy):
    """Answers HTTP 429 to the ranged ``eth_getLogs`` calls numbered in ``limited`` (0-based)."""

    def __init__(self, upstream_url: str, limited: range) -> None:
        super().__init__(upstream_url)
        self.limited = limited
        self.ranged_calls = 0
        self.answered_429 = 0

    def _inject(self, call: RecordedCall, request_id: Any) -> web.Response | None:
        if call.block_range is not None:
            number, self.ranged_calls = self.ranged_calls, self.ranged_calls + 1
            if number in self.limited:
                self.answered_429 += 1
                call.injected = "429"
                return web.Response(
                    status=429, text="Too Many Requests", headers={"Retry-After": "0"}
                )
        return super()._inject(call, request_id)


async def run_backfill(
    history: History,
    database: Path,
    url: str,
    metrics: Metrics,
    *,
    wrap_sink: Callable[[ChainStore], BackfillSink] | None = None,
    **options: Any,
) -> tuple[Outcome, Backfill]:
    """``backfill_history`` with the ``Backfill`` and its metrics kept for the test to read."""
    d = history.deployment
    served = ServedChain(31337, d.orderbook, d.order_owner, d.deployment_block)
    conn, _meta = await open_database(database, served)
    store = ChainStore(conn)
    endpoint = Endpoint(HttpTransport(url), max_backoff_s=0.05)
    backfill = Backfill(
        endpoint,
        wrap_sink(store) if wrap_sink else store,
        LogFilter(d.orderbook, ORDERBOOK_TOPICS),
        metrics=metrics,
        state=store,
        **options,
    )
    try:
        await backfill.run(history.start, history.head)
        rows = await conn.execute_fetchall(
            "SELECT tx_hash, log_index, block_number, block_hash FROM events"
            " ORDER BY block_number, log_index"
        )
        checkpoint = await store.checkpoint()
    finally:
        await endpoint.close()
        await conn.close()
    outcome = Outcome(
        [(str(t), int(i), int(n), str(h)) for t, i, n, h in rows],
        (checkpoint.number, checkpoint.hash) if checkpoint else None,
    )
    return outcome, backfill


async def test_rate_limits_halve_the_workers_and_successes_bring_them_back(
    history: History, clean: Outcome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workers = 4
    # the first ranged call (the window that measures the chain) passes, the next 4 are 429s
    proxy = await RateLimitingProxy(history.anvil.http_url, range(1, 1 + workers)).start()
    metrics = Metrics()
    gauge = metrics.backfill_concurrency_limit
    limits: list[float] = []
    original_set = gauge.set

    def recording_set(value: float) -> None:
        limits.append(value)
        original_set(value)

    monkeypatch.setattr(gauge, "set", recording_set)
    try:
        outcome, backfill = await run_backfill(
            history,
            tmp_path / "bot.db",
            proxy.url,
            metrics,
            workers=workers,
            batch_blocks=10,  # ~65 windows: a long range for 4 workers
            grow_after=2,
        )
    finally:
        await proxy.stop()
    assert proxy.answered_429 == workers
    assert outcome == clean  # exactly the clean run's queue and checkpoint
    limit = backfill.concurrency
    # the 4 were sent together: one congestion event, one halving
    assert limit.cuts >= 1 and limit.lowest <= workers // 2
    assert limit.limit == workers and limit.raises >= workers - limit.lowest  # all the way back
    # the metric followed: down to the lowest, then one step at a time back to the maximum
    assert min(limits) == limit.lowest and limits[-1] == workers
    assert metrics.registry.get_sample_value("backfill_concurrency_limit") == workers
    lowest_at = limits.index(limit.lowest)
    climb = sorted(set(limits[lowest_at:]))
    assert climb == list(range(int(limit.lowest), workers + 1))  # one worker at a time


class GatedSink:
    """The real store, whose first write waits until ``release`` is set; records write sizes."""

    def __init__(self, store: ChainStore) -> None:
        self._store = store
        self.release = asyncio.Event()
        self.waiting = asyncio.Event()
        self.writes: list[int] = []
        self.reconciled = 0

    async def store(self, logs: list[RawLog]) -> int:
        self.waiting.set()
        await self.release.wait()
        self.writes.append(len(logs))
        return await self._store.store(logs)

    async def advance(self, head: Head) -> None:
        await self._store.advance(head)

    async def reconcile(self, head: Head, logs: list[RawLog]) -> int:
        self.reconciled += len(logs)
        return await self._store.reconcile(head, logs)


async def test_fetched_logs_wait_for_the_writer_within_a_log_budget(
    history: History, clean: Outcome, tmp_path: Path
) -> None:
    """Windows of a few blocks, a budget of 12 logs: the writer never holds more than the
    budget at once (or one answer alone, when that is larger), however fast fetching is."""
    budget = 12
    proxy = await RpcProxy(history.anvil.http_url).start()
    sinks: list[GatedSink] = []

    def wrap(store: ChainStore) -> GatedSink:
        sinks.append(GatedSink(store))
        return sinks[0]

    async def release_later() -> None:
        try:
            # the first write waits until every worker has fetched a window: they run into
            # the budget (or the queue of windows) behind it
            await wait_until(
                lambda: bool(sinks) and sinks[0].waiting.is_set() and len(ranged_calls()) >= 4,
                timeout_s=GATE_TIMEOUT_S,
                what="the first write waiting and a window fetched by each worker",
            )
        finally:
            if sinks:
                sinks[0].release.set()

    def ranged_calls() -> list[RecordedCall]:
        return [call for call in proxy.get_logs_calls() if ranged(call)]

    releaser = asyncio.create_task(release_later())
    try:
        outcome, _backfill = await run_backfill(
            history,
            tmp_path / "bot.db",
            proxy.url,
            Metrics(),
            wrap_sink=wrap,
            workers=3,
            batch_blocks=40,
            max_logs_queued=budget,
            write_batch_logs=1000,
        )
        await releaser
    finally:
        releaser.cancel()
        await proxy.stop()
    assert outcome == clean
    writes = sinks[0].writes
    assert sum(writes) + sinks[0].reconciled == history.events  # (near the head: by hash)
    largest_window = max(
        sum(1 for row in clean.rows if start <= row[2] <= end)
        for start, end in (c.block_range for c in proxy.get_logs_calls() if c.block_range)
    )
    assert all(size <= max(budget, largest_window) for size in writes), writes
