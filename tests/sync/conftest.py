"""Fixtures shared by the backfill-reorg tests: a reorg-injecting proxy in front of the test
chain, a backfill rig (store + backfill + follower) talking through it, and short retries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import bot.sync.backfill as backfill_module
from tests.support.chain import Chain
from tests.support.reorg_proxy import ReorgProxy
from tests.support.reorg_rig import Rig, open_rig


@pytest.fixture
async def proxy(chain: Chain) -> AsyncIterator[ReorgProxy]:
    started = await ReorgProxy(chain.http_url).start()
    try:
        yield started
    finally:
        await started.stop()


@pytest.fixture
async def rig(chain: Chain, proxy: ReorgProxy, tmp_path: Path) -> AsyncIterator[Rig]:
    async with open_rig(chain, proxy.url, tmp_path / "bot.db") as opened:
        yield opened


@pytest.fixture
def short_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """A waiting window retries within half a second (30 s in production)."""
    monkeypatch.setattr(backfill_module, "RETRY_MAX_S", 0.5)
