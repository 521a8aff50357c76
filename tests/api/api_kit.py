"""Shared parts of the API tests: a migrated database, the app over real loopback HTTP, a provider
proxy that can hold ``eth_getLogs`` (to catch a job while it runs), and the orderbook's logs."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.api.app import ApiSources, install_api
from bot.api.jobs import BackfillJobs, LogSource
from bot.chain.endpoint import Endpoint
from bot.chain.parse import parse_log
from bot.chain.transport import transport_for
from bot.core.abi import ORDERBOOK_TOPICS
from bot.core.model import RawLog
from bot.devnet.deploy import Deployment
from bot.devnet.rpc import JsonRpcClient
from bot.store.connection import ServedChain, open_database
from tests.support.proxies import RpcProxy

TOKEN = "s3cret-api-token-4d1f"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def migrated_database(path: Path, deployment: Deployment) -> None:
    conn, _meta = await open_database(
        path,
        ServedChain(
            31337, deployment.orderbook, deployment.order_owner, deployment.deployment_block
        ),
    )
    await conn.close()


def orderbook_logs(
    rpc: JsonRpcClient, deployment: Deployment, first: int, last: int
) -> list[RawLog]:
    """Every orderbook log of ``first..last`` as the chain has them (the test's own fetch)."""
    answer = rpc.call(
        "eth_getLogs",
        [
            {
                "address": deployment.orderbook,
                "topics": [list(ORDERBOOK_TOPICS)],
                "fromBlock": hex(first),
                "toBlock": hex(last),
            }
        ],
    )
    return [parse_log(item) for item in answer]


def head_of(rpc: JsonRpcClient) -> int:
    return int(rpc.call("eth_blockNumber", []), 16)


class GatedProxy(RpcProxy):
    """Forwards JSON-RPC; while ``gate`` is clear, ``eth_getLogs`` calls wait (``held`` is set
    when one waits), so a test can act on a job that is certainly mid-scan."""

    def __init__(self, upstream_url: str) -> None:
        super().__init__(upstream_url)
        self.gate = asyncio.Event()
        self.gate.set()
        self.held = asyncio.Event()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        if (
            isinstance(body, dict)
            and body.get("method") == "eth_getLogs"
            and not self.gate.is_set()
        ):
            self.held.set()
            await self.gate.wait()
        return await super()._handle(request)


@asynccontextmanager
async def job_service(
    database: Path, deployment: Deployment, rpc_url: str, *, batch_blocks: int = 5
) -> AsyncIterator[BackfillJobs]:
    endpoint = Endpoint(transport_for(rpc_url), max_tries=2, max_backoff_s=0.05)
    jobs = await BackfillJobs.open(
        database, LogSource(endpoint, deployment.orderbook, ORDERBOOK_TOPICS, batch_blocks)
    )
    try:
        yield jobs
    finally:
        await jobs.close()
        await endpoint.close()


@asynccontextmanager
async def api_client(
    database: Path,
    *,
    jobs: BackfillJobs | None = None,
    token: str = "",
    loopback: bool = True,
    confirmations: int = 0,
    handoff_drained: Callable[[], bool] = lambda: True,
    chain_head: Callable[[], int | None] = lambda: None,
    alerts: Callable[[], list[dict[str, Any]]] | None = None,
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """The API app (no metrics routes) on a free loopback port, and a client for it."""
    app = web.Application()
    sources = ApiSources(
        database=database,
        confirmations=lambda: confirmations,
        handoff_drained=handoff_drained,
        chain_head=chain_head,
        jobs=lambda: jobs,
        alerts=alerts,
    )
    install_api(app, sources, token=token, loopback=loopback)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
