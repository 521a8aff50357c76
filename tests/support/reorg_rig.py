"""The bot's side of the backfill reorg tests, and the chain as the oracle.

``open_rig`` builds a real ``ChainStore`` on SQLite, an ``Endpoint`` through a proxy, and the
real ``Backfill`` and ``Follower``; ``assert_on_the_chain`` compares the queue with the chain
after the fact: the live rows must be exactly the canonical chain's orderbook logs (transaction,
index, block and block hash) and the checkpoint the canonical head.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from bot.chain.blocks import LogFilter
from bot.chain.endpoint import Endpoint
from bot.chain.transport import HttpTransport
from bot.core.abi import ORDERBOOK_TOPICS
from bot.store.chain_state import ChainStore
from bot.store.connection import ServedChain, open_database
from bot.sync.backfill import Backfill
from bot.sync.follower import Follower
from tests.support.chain import Chain

Row = tuple[str, int, int, str]


def tip(chain: Chain) -> int:
    return int(chain.rpc.call("eth_blockNumber", []), 16)


def block_hash(chain: Chain, number: int) -> str:
    return str(chain.rpc.call("eth_getBlockByNumber", [hex(number), False])["hash"]).lower()


def canonical_rows(chain: Chain) -> set[Row]:
    """Every orderbook log of the canonical chain now, read straight from anvil."""
    logs = chain.rpc.call(
        "eth_getLogs",
        [{"address": chain.deployment.orderbook, "fromBlock": "0x0", "toBlock": "latest"}],
    )
    return {
        (
            str(log["transactionHash"]).lower(),
            int(log["logIndex"], 16),
            int(log["blockNumber"], 16),
            str(log["blockHash"]).lower(),
        )
        for log in logs
    }


def queue_rows(database: Path, *, removed: bool) -> set[Row]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        found = conn.execute(
            "SELECT tx_hash, log_index, block_number, block_hash FROM events WHERE"
            + (" status = 'removed'" if removed else " status != 'removed'")
        ).fetchall()
    return {(str(t), int(i), int(n), str(h)) for t, i, n, h in found}


@dataclass
class Rig:
    """The bot's side: a store, an endpoint through the proxy, a backfill and a follower."""

    database: Path
    store: ChainStore
    endpoint: Endpoint
    backfill: Backfill
    follower: Follower


@asynccontextmanager
async def open_rig(chain: Chain, url: str, database: Path) -> AsyncIterator[Rig]:
    """4-block windows, 3 workers, blocks within 2 of the head by hash."""
    d = chain.deployment
    conn, _meta = await open_database(
        database, ServedChain(31337, d.orderbook, d.order_owner, d.deployment_block)
    )
    store = ChainStore(conn)
    endpoint = Endpoint(HttpTransport(url), max_backoff_s=0.05)
    log_filter = LogFilter(d.orderbook, ORDERBOOK_TOPICS)
    backfill = Backfill(endpoint, store, log_filter, workers=3, batch_blocks=4)
    try:
        yield Rig(
            database, store, endpoint, backfill, Follower(endpoint, store, log_filter, backfill)
        )
    finally:
        await endpoint.close()
        await conn.close()


async def assert_on_the_chain(chain: Chain, rig: Rig) -> None:
    assert queue_rows(rig.database, removed=False) == canonical_rows(chain)
    checkpoint = await rig.store.checkpoint()
    assert checkpoint is not None
    assert (checkpoint.number, checkpoint.hash) == (tip(chain), block_hash(chain, tip(chain)))
