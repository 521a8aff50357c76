"""The backfill engine's shape (SPEC §6): ``workers`` is a real cap, the writer commits in batches
behind a bounded queue, one progress line per window, and the blocks near the head are fetched by
``blockHash``. Real anvil, real SQLite, a loopback proxy that sees every request."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from loguru import logger

from bot.core.heads import Head
from bot.core.model import RawLog
from bot.core.ranges import BlockRange
from bot.devnet.rpc import JsonRpcClient
from bot.store.chain_state import ChainStore
from bot.sync.backfill import BackfillSink
from tests.support.botproc import write_config
from tests.support.history import History, backfill_history, build_history, wait_until
from tests.support.proxies import RpcProxy

PROGRESS = re.compile(
    r"^blocks (\d+)-(\d+) of (\d+)-(\d+), (\d+)%, ([\d,]+) events, ([\d,]+) blocks/s, ETA (\S+) s"
    r", workers (\d+)/(\d+)$"  # allowed now (AIMD) of the configured
)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    """~650 blocks with fills in four clusters (cheap: anvil_mine is fast near block 0)."""
    with build_history(
        tmp_path_factory.mktemp("engine") / "anvil.log", seed=7, fills=48, chunks=4, gap_blocks=150
    ) as built:
        yield built


class CountingProxy(RpcProxy):
    """Records the most ``eth_getLogs`` requests it had in flight at once (each takes
    ``latency_s`` here, as over a real network, so that concurrent requests overlap)."""

    def __init__(self, upstream_url: str, latency_s: float = 0.0) -> None:
        super().__init__(upstream_url)
        self.latency_s = latency_s
        self.in_flight = 0
        self.most_in_flight = 0

    async def _handle(self, request: web.Request) -> web.Response:
        payload = json.loads(await request.read())  # aiohttp caches the body for super()
        if not (isinstance(payload, dict) and payload.get("method") == "eth_getLogs"):
            return await super()._handle(request)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.latency_s)
            return await super()._handle(request)
        finally:
            self.in_flight -= 1


async def run_backfill(
    history: History,
    database: Path,
    url: str,
    *,
    workers: int,
    batch_blocks: int,
    wrap_sink: Callable[[ChainStore], BackfillSink] | None = None,
    on_window: Callable[[BlockRange], Awaitable[None]] | None = None,
) -> tuple[int, str] | None:
    outcome = await backfill_history(
        history,
        database,
        url,
        workers=workers,
        batch_blocks=batch_blocks,
        wrap_sink=wrap_sink,
        on_window=on_window,
    )
    assert len(outcome.rows) == history.events
    return outcome.checkpoint


@pytest.mark.parametrize("workers", [1, 3])
async def test_workers_is_a_real_cap(history: History, tmp_path: Path, workers: int) -> None:
    proxy = CountingProxy(history.anvil.http_url, latency_s=0.02)
    await proxy.start()
    try:
        checkpoint = await run_backfill(
            history, tmp_path / "bot.db", proxy.url, workers=workers, batch_blocks=25
        )
    finally:
        await proxy.stop()
    assert checkpoint is not None and checkpoint[0] == history.head
    assert len(proxy.get_logs_calls()) > 6 * workers  # enough windows to fill every worker
    assert proxy.most_in_flight == workers


class GatedSink:
    """The real store, whose first write waits for ``gate``; records each write's size."""

    def __init__(self, store: ChainStore) -> None:
        self._store = store
        self.gate = asyncio.Event()
        self.writes: list[int] = []

    async def store(self, logs: list[RawLog]) -> int:
        await self.gate.wait()
        self.writes.append(len(logs))
        return await self._store.store(logs)

    async def advance(self, head: Head) -> None:
        await self._store.advance(head)

    async def reconcile(self, head: Head, logs: list[RawLog]) -> int:
        await self.gate.wait()
        self.writes.append(len(logs))
        return await self._store.reconcile(head, logs)


async def test_writer_batches_behind_a_bounded_queue(history: History, tmp_path: Path) -> None:
    workers, batch = 2, 20
    windows_total = -(-(history.head - 2 - history.start) // batch)
    proxy = CountingProxy(history.anvil.http_url)
    await proxy.start()
    sinks: list[GatedSink] = []
    windows: list[BlockRange] = []

    def wrap(store: ChainStore) -> GatedSink:
        sinks.append(GatedSink(store))
        return sinks[0]

    async def on_window(window: BlockRange) -> None:
        windows.append(window)

    def fetched() -> int:
        return len(proxy.get_logs_calls())

    task = asyncio.create_task(
        run_backfill(
            history,
            tmp_path / "bot.db",
            proxy.url,
            workers=workers,
            batch_blocks=batch,
            wrap_sink=wrap,
            on_window=on_window,
        )
    )
    try:
        # the writer is stuck in its first write: fetching must stop once the queue is full
        await wait_until(lambda: fetched() >= 3 * workers + 1, timeout_s=10, what="a full queue")
        settled_at, seen = time.monotonic(), fetched()
        while time.monotonic() - settled_at < 0.5:  # an absence: nothing more is fetched
            await asyncio.sleep(0.02)
            if fetched() != seen:
                settled_at, seen = time.monotonic(), fetched()
        # 1 window in the writer's hands, 2 x workers queued, one blocked put per worker
        assert fetched() <= 3 * workers + 2 < windows_total
        sinks[0].gate.set()
        checkpoint = await asyncio.wait_for(task, 30)
    finally:
        if not task.done():
            task.cancel()
        await proxy.stop()
    assert checkpoint is not None and checkpoint[0] == history.head
    ranged_windows = [w for w in windows if w.span > 1]
    assert len(ranged_windows) == windows_total
    writes = sinks[0].writes[:-3]  # the last 3 are the by-hash blocks near the head
    assert len(writes) < windows_total  # several windows per commit
    assert sum(writes) == history.events - sum(sinks[0].writes[-3:])


async def test_one_progress_line_per_window(history: History, tmp_path: Path) -> None:
    lines: list[str] = []
    handler = logger.add(lambda message: lines.append(message.record["message"]), level="INFO")
    windows: list[BlockRange] = []

    async def on_window(window: BlockRange) -> None:
        windows.append(window)

    try:
        await run_backfill(
            history,
            tmp_path / "bot.db",
            history.anvil.http_url,
            workers=2,
            batch_blocks=100,
            on_window=on_window,
        )
    finally:
        logger.remove(handler)
    progress = [match for line in lines if (match := PROGRESS.match(line))]
    assert len(progress) == len(windows) + 3  # every range window and the 3 by-hash blocks
    covered = sorted((int(m[1]), int(m[2])) for m in progress)
    assert covered[0][0] == history.start and covered[-1][1] == history.head
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(covered))
    assert {(int(m[3]), int(m[4])) for m in progress} == {(history.start, history.head)}
    percents = [int(m[5]) for m in progress]
    assert percents == sorted(percents) and percents[-1] == 100
    events = [int(m[6].replace(",", "")) for m in progress]
    assert events == sorted(events) and events[-1] == history.events
    assert {(int(m[9]), int(m[10])) for m in progress} == {(2, 2)}  # never rate-limited


async def test_blocks_near_the_head_are_fetched_by_hash(history: History, tmp_path: Path) -> None:
    """``bot backfill`` with ``live.confirmations = 1``: blocks within 1 + 2 of the head by hash."""
    proxy = await RpcProxy(history.anvil.http_url).start()
    database = tmp_path / "bot.db"
    config = write_config(
        tmp_path / "bot.toml",
        history.deployment,
        ws_url=history.anvil.ws_url,
        http_url=proxy.url,
        database=database,
        confirmations=1,
        batch_blocks=200,
    )
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "--config",
            str(config),
            "backfill",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), 60)
    finally:
        await proxy.stop()
    assert process.returncode == 0, output.decode()[-3000:]
    head, end = history.head, history.head - 1  # backfill stops `confirmations` below the head
    with JsonRpcClient(history.anvil.http_url) as rpc:
        hashes = {
            n: rpc.call("eth_getBlockByNumber", [hex(n), False])["hash"]
            for n in range(head - 3, end + 1)
        }
    by_hash = [
        call.params[0]["blockHash"]
        for call in proxy.get_logs_calls()
        if "blockHash" in call.params[0]
    ]
    assert by_hash == [hashes[n] for n in range(head - 3, end + 1)]
    ranges: list[Any] = [call.block_range for call in proxy.get_logs_calls() if call.block_range]
    assert min(r[0] for r in ranges) == history.start
    assert max(r[1] for r in ranges) == head - 4  # nothing near the head by number
