"""A chain with history for backfill tests, and one backfill of it into a real database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bot.chain.endpoint import Endpoint
from bot.chain.transport import HttpTransport
from bot.core.abi import ORDERBOOK_TOPICS
from bot.core.ranges import BlockRange, SpanPolicy
from bot.devnet.anvil import AnvilProcess
from bot.devnet.deploy import Deployment, deploy
from bot.devnet.plan import make_plan
from bot.devnet.rpc import JsonRpcClient
from bot.devnet.simulate import run_plan
from bot.store.chain_state import ChainStore
from bot.store.connection import ServedChain, open_database
from bot.sync.backfill import Backfill, BackfillSink, LogFilter

Rows = list[tuple[str, int, int, str]]


@dataclass(frozen=True)
class History:
    anvil: AnvilProcess
    deployment: Deployment
    head: int
    events: int

    @property
    def start(self) -> int:
        return self.deployment.deployment_block


@contextmanager
def build_history(
    log_path: Path,
    *,
    seed: int,
    fills: int,
    chunks: int,
    gap_blocks: int,
    extra_args: tuple[str, ...] = (),
) -> Iterator[History]:
    """Fills in ``chunks`` clusters with ``gap_blocks`` empty blocks between them."""
    anvil = AnvilProcess(log_path, extra_args=extra_args)
    with anvil, JsonRpcClient(anvil.http_url) as rpc:
        deployment = deploy(rpc)
        plan = make_plan(seed=seed, fills=fills)
        for index in range(chunks):
            run_plan(
                rpc,
                deployment,
                plan[index * len(plan) // chunks : (index + 1) * len(plan) // chunks],
            )
            if index < chunks - 1:
                rpc.call("anvil_mine", [hex(gap_blocks)])
        head = int(rpc.call("eth_blockNumber", []), 16)
        logs = rpc.call(
            "eth_getLogs",
            [{"address": deployment.orderbook, "fromBlock": "0x0", "toBlock": hex(head)}],
        )
        yield History(anvil, deployment, head, len(logs))


@dataclass(frozen=True)
class Outcome:
    rows: Rows  # (tx_hash, log_index, block_number, block_hash) of every queued event
    checkpoint: tuple[int, str] | None


async def backfill_history(
    history: History,
    database: Path,
    url: str,
    *,
    workers: int,
    batch_blocks: int,
    wrap_sink: Callable[[ChainStore], BackfillSink] | None = None,
    on_window: Callable[[BlockRange], Awaitable[None]] | None = None,
    max_backoff_s: float = 10.0,
    policy: SpanPolicy | None = None,
) -> Outcome:
    """Backfill the whole history through ``url`` into ``database``: the queue and checkpoint."""
    d = history.deployment
    served = ServedChain(31337, d.orderbook, d.order_owner, d.deployment_block)
    conn, _meta = await open_database(database, served)
    store = ChainStore(conn)
    endpoint = Endpoint(HttpTransport(url), max_backoff_s=max_backoff_s)
    try:
        await Backfill(
            endpoint,
            wrap_sink(store) if wrap_sink else store,
            LogFilter(d.orderbook, ORDERBOOK_TOPICS),
            workers=workers,
            batch_blocks=batch_blocks,
            on_window=on_window,
            policy=policy,
            state=store,
        ).run(history.start, history.head)
        rows = await conn.execute_fetchall(
            "SELECT tx_hash, log_index, block_number, block_hash FROM events"
            " ORDER BY block_number, log_index"
        )
        checkpoint = await store.checkpoint()
    finally:
        await endpoint.close()
        await conn.close()
    return Outcome(
        [(str(t), int(i), int(n), str(h)) for t, i, n, h in rows],
        (checkpoint.number, checkpoint.hash) if checkpoint else None,
    )


async def wait_until(condition: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    """The asyncio twin of ``botproc.wait_for``: poll with a deadline, never a fixed sleep."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.005)
