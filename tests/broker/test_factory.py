"""``build_broker``: the configured broker, with the configured request budget."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.broker.alpaca import AlpacaBroker
from bot.broker.dry_run import DryRunBroker
from bot.broker.factory import build_broker
from bot.config import Settings, load
from bot.devnet.fake_alpaca import FakeAlpaca

KEY, SECRET = "factory-key", "factory-secret"


def settings(tmp_path: Path, extra: str = "") -> Settings:
    path = tmp_path / "config.toml"
    path.write_text(
        """
[orderbook]
address = "0x5fbdb2315678afecb367f032d93f642f64180aa3"
order_owner = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
"""
        + extra
    )
    return load(path, {}).settings


@pytest.fixture
async def fake() -> AsyncIterator[FakeAlpaca]:
    server = FakeAlpaca(key_id=KEY, secret=SECRET, rate_limit_per_min=10**6)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def alpaca_config(base_url: str, requests_per_minute: int | None) -> str:
    budget = "" if requests_per_minute is None else f"requests_per_minute = {requests_per_minute}"
    return f"""
[broker]
kind = "alpaca"

[broker.alpaca]
base_url = "{base_url}"
api_key_id = "{KEY}"
api_secret = "{SECRET}"
{budget}
"""


async def test_the_default_broker_is_the_dry_run(tmp_path: Path) -> None:
    broker = build_broker(settings(tmp_path))
    assert isinstance(broker, DryRunBroker)
    await broker.aclose()


async def test_a_raised_budget_lets_more_reads_through_than_alpacas_quota(
    tmp_path: Path, fake: FakeAlpaca
) -> None:
    """250 reads in a row: past the default budget's 160 reads a minute (a fifth of 200 kept
    for placements) the client would wait ~60 s; with 1,000 a minute they all go at once."""
    broker = build_broker(settings(tmp_path, alpaca_config(fake.base_url, 1000)))
    assert isinstance(broker, AlpacaBroker)
    try:
        async with asyncio.timeout(30):
            for _ in range(250):
                await broker.clock()
    finally:
        await broker.aclose()


async def test_the_default_budget_holds_a_read_past_its_share(
    tmp_path: Path, fake: FakeAlpaca
) -> None:
    """With 5 a minute, one slot is kept for placements: the 5th read waits for the window."""
    broker = build_broker(settings(tmp_path, alpaca_config(fake.base_url, 5)))
    try:
        for _ in range(4):
            await broker.clock()
        before = len(fake.requests)
        fifth = asyncio.create_task(broker.clock())
        # held by the client's own limiter for ~60 s, never sent: unbudgeted it would be
        # answered in milliseconds (so a slow machine can only hide a failure, never fake one)
        await asyncio.wait({fifth}, timeout=0.5)
        assert not fifth.done()
        assert len(fake.requests) == before
        fifth.cancel()
    finally:
        await broker.aclose()
