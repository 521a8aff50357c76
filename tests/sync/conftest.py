"""Fixtures shared by the backfill-reorg tests: a reorg-injecting proxy in front of the test
chain, and a backfill rig (store + backfill + follower) talking through it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

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
