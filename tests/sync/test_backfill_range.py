"""`bot backfill --from N --to M` and seed 000's BACKFILL_START_HEIGHT / BACKFILL_END_HEIGHT."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from bot.devnet.plan import make_plan
from bot.devnet.simulate import run_plan
from bot.store import queries
from tests.support.botproc import bot_backfill, write_config
from tests.support.chain import Chain


def _backfill(config: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    return bot_backfill(config, *args, env=env)[0]


def test_from_below_the_checkpoint_rescans_only_what_is_missing(
    chain: Chain, tmp_path: Path
) -> None:
    database = tmp_path / "bot.db"
    config = write_config(
        tmp_path / "bot.toml", chain.deployment, ws_url=chain.ws_url, database=database
    )
    receipts = run_plan(chain.rpc, chain.deployment, make_plan(seed=5, fills=20))
    blocks = sorted({int(r["blockNumber"], 16) for r in receipts})
    middle = blocks[len(blocks) // 2]
    first = _backfill(config, env={"BACKFILL_END_HEIGHT": str(blocks[-1])})
    assert first["to"] == blocks[-1] and "rescan" not in first
    checkpoint = queries.status(database)["checkpoint_block"]
    # a provider once answered [] for these blocks: their rows are missing from the queue
    with sqlite3.connect(database) as conn:
        lost = conn.execute(
            "DELETE FROM events WHERE status = 'processed' AND is_ours = 0 AND block_number >= ?",
            (middle,),
        ).rowcount
    assert lost > 0
    again = _backfill(config, "--from", str(middle), "--to", str(blocks[-1]))
    assert again["rescan"]["state"] == "done"
    assert again["rescan"]["events_added"] == lost  # exactly the missing ones
    assert again["rescan"]["from"] == middle
    assert queries.status(database)["checkpoint_block"] == checkpoint  # never moved back
    assert queries.status(database)["queue"]["pending"] == 0  # and drained in order

    # seed 000's name works as the default of --from
    third = _backfill(config, env={"BACKFILL_START_HEIGHT": str(middle)})
    assert third["rescan"]["events_added"] == 0


def test_to_well_below_the_head_stops_the_checkpoint_there(chain: Chain, tmp_path: Path) -> None:
    database = tmp_path / "bot.db"
    config = write_config(
        tmp_path / "bot.toml", chain.deployment, ws_url=chain.ws_url, database=database
    )
    receipts = run_plan(chain.rpc, chain.deployment, make_plan(seed=6, fills=20))
    blocks = sorted({int(r["blockNumber"], 16) for r in receipts})
    target = blocks[len(blocks) // 2]
    assert blocks[-1] - target > 5  # far below the head: the ranged part of the backfill
    summary = _backfill(config, "--to", str(target))
    assert summary["to"] == target and summary["processed_up_to"] == target
    assert queries.status(database)["checkpoint_block"] == target  # not the head's
