"""Helpers of the doctor tests: configs as a user writes them, a database of a given chain, the
CLI as a user runs it, and a JSON-RPC node on loopback that says it is chain 1."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.devnet.deploy import Deployment
from bot.doctor import CheckResult
from bot.store.connection import ServedChain, open_database
from tests.support.botproc import write_config

TIMEOUT_S = 5.0
NO_CODE_ADDRESS = "0x000000000000000000000000000000000000dEaD"
ALL_DEVNET_CHECKS = [
    "config",
    "providers",
    "subscription",
    "orderbook",
    "block time",
    "database",
    "broker",
    "disk",
    "secrets",
]
ALPACA_CHECKS = ["broker keys", "broker account", "broker clock", "broker shorting"]


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def doctor_config(
    tmp_path: Path,
    deployment: Deployment,
    *,
    ws_url: str,
    http_url: str = "",
    database: Path | None = None,
    extra: str = "",
    mode: int = 0o600,
    confirmations: int | None = 0,
) -> Path:
    """``tests.support.botproc.write_config``'s config, with file ``mode`` (600: no secret
    readable by others)."""
    path = write_config(
        tmp_path / "config.toml",
        deployment,
        ws_url=ws_url,
        http_url=http_url,
        database=database or tmp_path / "bot.db",
        extra=extra,
        confirmations=confirmations,
    )
    path.chmod(mode)
    return path


def alpaca_extra(base_url: str, *, key_id: str = "fake-key-id", secret: str = "") -> str:
    secret_line = f'api_secret = "{secret}"' if secret else ""
    return f"""
[broker]
kind = "alpaca"

[broker.alpaca]
base_url = "{base_url}"
api_key_id = "{key_id}"
{secret_line}
"""


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def failing(results: list[CheckResult]) -> list[str]:
    return [r.name for r in results if not r.ok]


def doctor_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m bot --config CONFIG doctor ARGS``, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config), "doctor", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def database_for(path: Path, chain: ServedChain) -> None:
    """A migrated database that records ``chain`` (made with the store's own API)."""
    conn, _meta = await open_database(path, chain)
    await conn.close()


def served(deployment: Deployment, **changes: Any) -> ServedChain:
    """What a database of this devnet deployment records, with ``changes``."""
    this_chain = ServedChain(
        31337, deployment.orderbook, deployment.order_owner, deployment.deployment_block
    )
    return dataclasses.replace(this_chain, **changes)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(database: Path) -> tuple[str, list[str]]:
    """The database's bytes and the names in its folder."""
    return digest(database), sorted(p.name for p in database.parent.iterdir())


def mainnet_config(
    tmp_path: Path, deployment: Deployment, stub: dict[str, Any], confirmations: int | None
) -> Path:
    return doctor_config(
        tmp_path,
        deployment,
        ws_url=stub["ws_url"],
        http_url=stub["http_url"],
        confirmations=confirmations,
    )


@contextlib.asynccontextmanager
async def mainnet_stub() -> AsyncIterator[dict[str, Any]]:
    """A JSON-RPC node on loopback (HTTP POST and WebSocket) that says it is chain 1, with a
    settable latest block time: anvil here always runs as 31337, whose block-time check is
    skipped."""
    state: dict[str, Any] = {"timestamp": int(time.time())}

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        answers = {
            "eth_chainId": "0x1",
            "eth_blockNumber": "0x64",
            "eth_getCode": "0x6001",
            "eth_getBlockByNumber": {"number": "0x64", "timestamp": hex(state["timestamp"])},
            "eth_subscribe": "0x5ub",
            "eth_unsubscribe": True,
        }
        return {"jsonrpc": "2.0", "id": body["id"], "result": answers[body["method"]]}

    async def post(request: web.Request) -> web.Response:
        return web.json_response(answer(await request.json()))

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        async for message in socket:
            await socket.send_json(answer(json.loads(message.data)))
        return socket

    app = web.Application()
    app.router.add_post("/", post)
    app.router.add_get("/", websocket)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    state["http_url"], state["ws_url"] = f"http://127.0.0.1:{port}/", f"ws://127.0.0.1:{port}/"
    try:
        yield state
    finally:
        await runner.cleanup()
