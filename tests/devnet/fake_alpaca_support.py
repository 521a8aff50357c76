"""Helpers for the fake Alpaca tests: keys, an order body, a client, waiting with a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from bot.devnet.fake_alpaca import FakeAlpaca

KEYS = {"APCA-API-KEY-ID": "fake-key-id", "APCA-API-SECRET-KEY": "fake-secret"}
SLOW = 3600.0  # a step_s that never ticks during a test: steps are taken by hand (fake.step())


def order_body(
    cid: str, symbol: str = "AAPL", qty: object = "10", side: str = "buy", **extra: Any
) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "qty": qty,
        "side": side,
        "type": "market",
        "time_in_force": "day",
        "client_order_id": cid,
        **extra,
    }


@asynccontextmanager
async def served(fake: FakeAlpaca) -> AsyncIterator[aiohttp.ClientSession]:
    """Start ``fake`` and yield a session with the right keys against it."""
    url = await fake.start()
    try:
        async with aiohttp.ClientSession(base_url=url, headers=KEYS) as session:
            yield session
    finally:
        await fake.stop()


async def call(
    session: aiohttp.ClientSession, method: str, path: str, **kw: Any
) -> tuple[int, Any]:
    """(status, parsed JSON body or None when empty)."""
    async with session.request(method, path, **kw) as resp:
        text = await resp.text()
        return resp.status, (None if not text else await resp.json(content_type=None))


async def wait_until(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail after ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.005)


def status_of(fake: FakeAlpaca, cid: str) -> str | None:
    order = fake.order_by_client_id(cid)
    return None if order is None else str(order["status"])
