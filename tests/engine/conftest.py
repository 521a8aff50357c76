"""Fixtures of the engine tests (the kit itself is in engine_kit.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest
from engine_kit import SERVED, AtAlpaca, Enqueue, FakeChain, Fills, OpenEngine, fast_options

from bot.broker.alpaca import AlpacaBroker
from bot.broker.base import Broker
from bot.broker.dry_run import DryRunBroker
from bot.core.model import RawLog
from bot.core.tokens import DEFAULT_RULES
from bot.devnet.fake_alpaca import FakeAlpaca
from bot.engine import Engine
from bot.store import queue
from bot.store.connection import connect


@pytest.fixture
async def open_engine(db_path: Path) -> AsyncIterator[OpenEngine]:
    """``await open_engine(broker=..., chain=..., **options)``; closed at teardown."""
    opened: list[Engine] = []

    async def factory(
        broker: Broker | None = None, chain: FakeChain | None = None, **options: Any
    ) -> Engine:
        engine = await Engine.open(
            db_path,
            SERVED,
            broker=broker or DryRunBroker(),
            chain=chain or FakeChain(),
            rules=DEFAULT_RULES,
            options=fast_options(**options),
        )
        opened.append(engine)
        return engine

    yield factory
    for engine in opened:
        if engine.connection._running:
            await engine.close()


@pytest.fixture
def enqueue(db_path: Path) -> Enqueue:
    """Enqueue through a connection of its own, as the backfill and the subscription do."""

    async def run(logs: Iterable[RawLog]) -> queue.EnqueueResult:
        conn = await connect(db_path)
        try:
            return await queue.enqueue(conn, list(logs))
        finally:
            await conn.close()

    return run


@pytest.fixture
def fills() -> Fills:
    return Fills()


@pytest.fixture
async def at() -> AsyncIterator[AtAlpaca]:
    """The fake Alpaca server (fills only on ``fake.step()``) and the real client talking to it
    over loopback HTTP."""
    fake = FakeAlpaca(key_id=AtAlpaca.KEY, secret=AtAlpaca.SECRET, step_s=3600.0)
    await fake.start()
    broker = AlpacaBroker(
        base_url=fake.base_url, key_id=AtAlpaca.KEY, secret=AtAlpaca.SECRET, timeout_s=5.0
    )
    yield AtAlpaca(fake, broker)
    await broker.aclose()
    await fake.stop()
