"""The backfill engine against every provider error of the fixture table (SPEC §6).

A real anvil holds a few thousand blocks of history with fills; a loopback JSON-RPC proxy
answers one ``eth_getLogs`` with a provider's error and records what the bot asks next. The
backfill is the real ``Backfill`` class writing through a real ``ChainStore`` to a SQLite file;
its final queue and checkpoint must equal a clean run's on the same chain.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.core import retry
from bot.core.heads import Head
from bot.core.model import RawLog
from bot.core.ranges import BlockRange, SpanPolicy
from bot.devnet.rpc import JsonRpcClient
from bot.store.chain_state import ChainStore
from tests.support.history import (
    History,
    Outcome,
    backfill_history,
    build_history,
    wait_until,
)
from tests.support.proxies import Injection, RecordedCall, RpcProxy

CASES: list[dict[str, Any]] = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "getlogs_errors.json").read_text()
)["cases"]
BATCH_BLOCKS = 2500  # above every native cap below 2500 (2048, 1000, 800) so those caps matter
SMALL_CAP = 1234  # replaces a provider's cap that would not constrain a 2,500-block request
NO_SLEEP_S = 0.1
FIRST_BACKOFF_S = 0.2  # Endpoint's backoff base: the first retry waits this with jitter pinned


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    """~2,600 blocks with fills spread over them (--prune-history halves anvil_mine's cost)."""
    with build_history(
        tmp_path_factory.mktemp("history") / "anvil.log",
        seed=41,
        fills=90,
        chunks=6,
        gap_blocks=520,
        extra_args=("--prune-history",),
    ) as built:
        yield built


async def run_backfill(
    history: History,
    database: Path,
    url: str,
    *,
    workers: int,
    batch_blocks: int = BATCH_BLOCKS,
    wrap_sink: Callable[[ChainStore], Any] | None = None,
    on_window: Callable[[BlockRange], Any] | None = None,
    max_backoff_s: float = 0.3,
    policy: SpanPolicy | None = None,
) -> Outcome:
    return await backfill_history(
        history,
        database,
        url,
        workers=workers,
        batch_blocks=batch_blocks,
        wrap_sink=wrap_sink,
        on_window=on_window,
        max_backoff_s=max_backoff_s,
        policy=policy,
    )


@pytest.fixture(scope="module")
def clean(history: History, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """A run with no proxy and no error: the reference state."""
    database = tmp_path_factory.mktemp("clean") / "bot.db"
    outcome = asyncio.run(run_backfill(history, database, history.anvil.http_url, workers=1))
    with JsonRpcClient(history.anvil.http_url) as rpc:
        top = rpc.call("eth_getBlockByNumber", [hex(history.head), False])
    assert outcome.checkpoint == (history.head, top["hash"])
    assert len(outcome.rows) >= 90  # every fill's events, from all over the history
    assert outcome.rows[-1][2] - outcome.rows[0][2] > 2000
    return outcome


@pytest.fixture
def pinned_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Full jitter can draw ~0 s; pin it to its ceiling so a backoff is measurable."""
    monkeypatch.setattr(retry, "delay_s", functools.partial(retry.delay_s, rand=lambda: 1.0))


def span(call: RecordedCall) -> int:
    assert call.block_range is not None
    return call.block_range[1] - call.block_range[0] + 1


def first_half(block_range: tuple[int, int]) -> tuple[int, int]:
    start, end = block_range
    return start, start + (end - start + 1) // 2 - 1


_CAP_NUMBER = re.compile(r"\d[\d,]*(?=\D*$)")


def cap_message(case: dict[str, Any], request_span: int) -> tuple[str, int]:
    """The case's message, its cap rewritten to SMALL_CAP when it would not bind ``request_span``
    (the number is the last one in every cap message of the table)."""
    cap = int(case["max_span_blocks"])
    if cap < request_span:
        return case["message"], cap
    number = _CAP_NUMBER.search(case["message"])
    assert number is not None and int(number.group().replace(",", "")) == cap
    small = f"{SMALL_CAP:,}" if "," in number.group() else str(SMALL_CAP)
    return case["message"][: number.start()] + small + case["message"][number.end() :], SMALL_CAP


def ranged(proxy: RpcProxy) -> list[RecordedCall]:
    return [call for call in proxy.get_logs_calls() if call.block_range is not None]


@pytest.mark.usefixtures("pinned_jitter")
@pytest.mark.parametrize(
    "case", CASES, ids=[f"{i}-{c['provider']}-{c['action']}" for i, c in enumerate(CASES)]
)
async def test_each_provider_error_once_then_the_right_next_request(
    case: dict[str, Any], history: History, clean: Outcome, tmp_path: Path
) -> None:
    first_span = min(BATCH_BLOCKS, history.head - 2 - history.start)  # the last 3 go by hash
    message, cap = (
        cap_message(case, first_span) if case["action"] == "cap" else (case["message"], 0)
    )
    proxy = await RpcProxy(history.anvil.http_url).start()
    proxy.injections.append(
        Injection(
            message,
            code=case.get("code"),
            http_status=case.get("http_status"),
            when=lambda call: call.block_range is not None,
        )
    )
    try:
        outcome = await run_backfill(history, tmp_path / "bot.db", proxy.url, workers=1)
    finally:
        await proxy.stop()

    calls = ranged(proxy)
    failed_at = next(i for i, call in enumerate(calls) if call.injected is not None)
    failed, following = calls[failed_at], calls[failed_at + 1]
    assert failed.block_range is not None and span(failed) == first_span
    gap = following.at - failed.at
    action = case["action"]
    if action in ("use_range", "shrink"):
        # use_range: the proxy pointed the suggestion at the first half of the failed request
        assert following.block_range == first_half(failed.block_range)
        assert gap < NO_SLEEP_S
    elif action == "cap":
        assert following.block_range == (failed.block_range[0], failed.block_range[0] + cap - 1)
        assert gap < NO_SLEEP_S
        assert all(span(call) <= cap for call in calls[failed_at + 1 :])
    else:  # wait, rate_limit, retry: the same range again, after a backoff
        assert action in ("wait", "rate_limit", "retry")
        assert following.block_range == failed.block_range
        assert FIRST_BACKOFF_S * 0.9 <= gap < 2.0
    assert outcome == clean


@pytest.mark.usefixtures("pinned_jitter")
async def test_smallest_cap_seen_so_far_bounds_every_later_request(
    history: History, clean: Outcome, tmp_path: Path
) -> None:
    proxy = await RpcProxy(history.anvil.http_url).start()
    seen = {"n": 0}

    def nth(n: int) -> Callable[[RecordedCall], bool]:
        def when(call: RecordedCall) -> bool:
            if call.block_range is None:
                return False
            seen["n"] += 1
            return seen["n"] == n

        return when

    proxy.injections += [
        Injection(
            "requested too many blocks from 1 to 9, maximum is set to 2048", -32000, when=nth(1)
        ),
        Injection("Max range: 800", -32047, when=nth(3)),
    ]
    try:
        outcome = await run_backfill(history, tmp_path / "bot.db", proxy.url, workers=1)
    finally:
        await proxy.stop()
    calls = ranged(proxy)
    injected = [i for i, call in enumerate(calls) if call.injected]
    assert len(injected) == 2
    assert all(span(call) <= 2048 for call in calls[injected[0] + 1 :])
    assert all(span(call) <= 800 for call in calls[injected[1] + 1 :])
    assert outcome == clean


async def test_a_learned_cap_outlives_the_run(
    history: History, clean: Outcome, tmp_path: Path
) -> None:
    """SPEC §6: the cap is remembered per provider, so the next backfill through the same
    provider (a reconnect's gap, `bot backfill` after `run`) never asks above it again."""
    policy = SpanPolicy(BATCH_BLOCKS)
    proxy = await RpcProxy(history.anvil.http_url).start()
    proxy.injections.append(Injection("Max range: 800", -32047))
    try:
        await run_backfill(history, tmp_path / "first.db", proxy.url, workers=1, policy=policy)
        first = len(proxy.calls)
        second = await run_backfill(
            history, tmp_path / "second.db", proxy.url, workers=1, policy=policy
        )
    finally:
        await proxy.stop()
    later = [c for c in proxy.calls[first:] if c.block_range is not None]
    assert later and all(span(call) <= 800 for call in later)
    assert not any(call.injected for call in proxy.calls[first:])
    assert second == clean


@pytest.mark.usefixtures("pinned_jitter")
@pytest.mark.parametrize(
    "index", [1, 21], ids=lambda i: f"{CASES[i]['provider']}-{CASES[i]['action']}"
)
async def test_several_workers_retry_identified_by_from_block(
    index: int, history: History, clean: Outcome, tmp_path: Path
) -> None:
    case = CASES[index]
    batch = 400
    target = history.start + 2 * batch  # the third window: others are in flight around it
    proxy = await RpcProxy(history.anvil.http_url).start()
    proxy.injections.append(
        Injection(
            case["message"],
            code=case.get("code"),
            when=lambda call: call.block_range is not None and call.block_range[0] == target,
        )
    )
    try:
        outcome = await run_backfill(
            history, tmp_path / "bot.db", proxy.url, workers=4, batch_blocks=batch
        )
    finally:
        await proxy.stop()
    calls = ranged(proxy)
    failed_at = next(i for i, call in enumerate(calls) if call.injected is not None)
    failed = calls[failed_at]
    assert failed.block_range == (target, target + batch - 1)
    following = next(
        c for c in calls[failed_at + 1 :] if c.block_range and c.block_range[0] == target
    )
    if case["action"] == "use_range":
        assert following.block_range == first_half(failed.block_range)
        assert following.at - failed.at < NO_SLEEP_S
    else:
        assert following.block_range == failed.block_range
        assert following.at - failed.at >= FIRST_BACKOFF_S * 0.9
    assert outcome == clean


class StuckWindowProxy(RpcProxy):
    """Answers ``internal error`` to every request for one window until released."""

    def __init__(self, upstream_url: str, stuck_from: int) -> None:
        super().__init__(upstream_url)
        self.stuck_from = stuck_from
        self.stuck = True
        self.failures = 0

    def _inject(self, call: RecordedCall, request_id: Any) -> web.Response | None:
        if self.stuck and call.block_range and call.block_range[0] == self.stuck_from:
            self.failures += 1
            call.injected = "internal error"
            error = {"code": -32603, "message": "internal error"}
            return web.json_response({"jsonrpc": "2.0", "id": request_id, "error": error})
        return super()._inject(call, request_id)


class RecordingSink:
    """The real ChainStore, with every checkpoint move recorded."""

    def __init__(self, store: ChainStore) -> None:
        self._store = store
        self.advances: list[int] = []

    async def store(self, logs: list[RawLog]) -> int:
        return await self._store.store(logs)

    async def advance(self, head: Head) -> None:
        self.advances.append(head.number)
        await self._store.advance(head)

    async def reconcile(self, head: Head, logs: list[RawLog]) -> int:
        self.advances.append(head.number)
        return await self._store.reconcile(head, logs)


async def test_a_failing_window_is_retried_and_the_checkpoint_never_passes_it(
    history: History, clean: Outcome, tmp_path: Path
) -> None:
    batch = 250
    stuck = BlockRange(history.start + batch, history.start + 2 * batch - 1)
    last_ranged = history.head - 3
    later = {s for s in range(stuck.end + 1, last_ranged + 1, batch)}
    proxy = StuckWindowProxy(history.anvil.http_url, stuck.start)
    await proxy.start()
    completed: set[int] = set()
    sinks: list[RecordingSink] = []

    async def on_window(window: BlockRange) -> None:
        completed.add(window.start)

    def wrap(store: ChainStore) -> RecordingSink:
        sinks.append(RecordingSink(store))
        return sinks[0]

    task = asyncio.create_task(
        run_backfill(
            history,
            tmp_path / "bot.db",
            proxy.url,
            workers=3,
            batch_blocks=batch,
            wrap_sink=wrap,
            on_window=on_window,
            max_backoff_s=0.1,
        )
    )
    try:
        await wait_until(lambda: later <= completed, timeout_s=30, what="every later window")
        await wait_until(lambda: proxy.failures >= 3, timeout_s=10, what="retries of the window")
        assert stuck.start not in completed
        advances = list(sinks[0].advances)
        assert advances == [stuck.start - 1]  # the first window, never over the stuck one
        proxy.stuck = False
        outcome = await asyncio.wait_for(task, 30)
    finally:
        if not task.done():
            task.cancel()
        await proxy.stop()
    assert stuck.start in completed
    assert sinks[0].advances[-1] == history.head
    assert outcome == clean
