"""`bot backfill` drains behind its backfill (issue 9) and still hedges the backlog once."""

from __future__ import annotations

import re
import sqlite3
from decimal import Decimal
from pathlib import Path

from bot.devnet.plan import expected_net, make_plan, our_share_deltas
from bot.devnet.simulate import run_plan
from bot.store import queries
from tests.support.botproc import bot_backfill, write_config
from tests.support.chain import Chain


def test_the_drain_books_behind_the_backfill_and_the_backlog_is_hedged_once(
    chain: Chain, tmp_path: Path
) -> None:
    plan = make_plan(seed=11, fills=40)
    run_plan(chain.rpc, chain.deployment, plan)
    database = tmp_path / "bot.db"
    # one-block windows, one worker: many windows, so the drain has checkpoints to follow
    config = write_config(
        tmp_path / "bot.toml",
        chain.deployment,
        ws_url=chain.ws_url,
        database=database,
        workers=1,
        batch_blocks=1,
    )
    _summary, log = bot_backfill(config)
    found = re.search(r"drained (\d+) events behind the backfill in (\d+) passes", log)
    assert found is not None, log[-2000:]
    behind_events, passes = int(found[1]), int(found[2])
    assert passes >= 1 and behind_events > 0  # the drain really ran alongside the fetch

    status = queries.status(database)
    positions = {row["ticker"]: Decimal(row["onchain_net_shares"]) for row in status["positions"]}
    assert positions == expected_net(plan)
    assert len(queries.trades(database)) == sum(len(our_share_deltas(tx)) for tx in plan)
    assert status["queue"]["pending"] == 0
    with sqlite3.connect(database) as conn:
        per_ticker = dict(conn.execute("SELECT ticker, COUNT(*) FROM executions GROUP BY ticker"))
    # hedges are decided only by the pass after the backfill: one order per ticker at most
    assert per_ticker and set(per_ticker.values()) == {1}
