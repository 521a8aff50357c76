"""The read commands and the admin marks, as a user runs them (``python -m bot …``), SPEC §8, §9.

``status``/``trades``/``executions`` run while ``bot run`` holds the lock, print the §9 JSON
(amounts in plain notation) and never migrate; on a missing database they exit 1 with a message,
not a traceback. ``unpark``, ``skip`` and ``retry`` change rows, say what they did, and the running
bot acts on them: an unparked ticker hedges again, and executions paused by failed events of ours
resume once those are skipped or retried successfully.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from eth_utils.address import to_checksum_address

from bot.devnet.contracts import TxSender
from bot.devnet.deploy import DeployedToken, Deployment
from bot.devnet.plan import (
    US,
    OrderSpec,
    PlannedTx,
    TakeFill,
    expected_net,
    make_plan,
    our_share_deltas,
)
from bot.devnet.simulate import run_plan, send_planned
from bot.store import queries
from bot.store.migrations import load_migrations, split_statements
from tests.support.botproc import BotProcess, wait_caught_up, wait_for, write_config
from tests.support.chain import Chain

# SPEC §9: the status contract. The implementation adds a few documented fields of its own
# (why executions are paused, decimals mismatches, skipped events, rejection counts, broker
# details); the key sets are pinned exactly so neither a contract field nor a new one goes
# unnoticed.
STATUS_KEYS = {
    "idle",
    "checkpoint_block",
    "head_block",
    "queue",
    "positions",
    "executions",
    "hedging_blocked",
    "market_open",
    "next_open",
    "market_as_of",
    "provider",
    "provider_trouble",
}
STATUS_EXTRA = {"paused_reasons", "decimals_mismatches"}
QUEUE_KEYS = {"pending", "processed", "removed", "failed"}
QUEUE_EXTRA = {"skipped"}
POSITION_KEYS = {
    "ticker",
    "onchain_net_shares",
    "hedged_shares",
    "in_flight_shares",
    "unhedged_shares",
    "parked",
    "broker_position_shares",
    "drift_shares",
}
POSITION_EXTRA = {"consecutive_rejections"}
EXECUTION_KEYS = {
    "id",
    "ticker",
    "direction",
    "shares",
    "filled_shares",
    "status",
    "client_order_id",
}
EXECUTION_EXTRA = {"broker_order_id", "avg_price", "reason", "created_at", "updated_at"}
PLAIN_DECIMAL = re.compile(r"^-?(0|[1-9]\d*)(\.\d*[1-9])?$")
WHOLE_SHARES = re.compile(r"^[1-9]\d*$")
ONE = 10**18


# ----------------------------------------------------------------------------- helpers


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _cli_json(config: Path, command: str) -> Any:
    result = _cli(config, command, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _head(chain: Chain) -> int:
    return int(chain.rpc.call("eth_blockNumber", []), 16)


def _query(database: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _schema_versions(database: Path) -> list[int]:
    return [int(r[0]) for r in _query(database, "SELECT version FROM schema_migrations")]


def _position(report: dict[str, Any], ticker: str) -> dict[str, Any]:
    return next(p for p in report["positions"] if p["ticker"] == ticker)


def _signed(direction: str, shares: str) -> Decimal:
    return Decimal(shares) if direction == "BUY" else -Decimal(shares)


def _check_status_shape(report: dict[str, Any]) -> None:
    assert set(report) == STATUS_KEYS | STATUS_EXTRA
    assert isinstance(report["idle"], bool)
    assert isinstance(report["checkpoint_block"], int)
    assert report["head_block"] is None or isinstance(report["head_block"], int)
    provider = report["provider"]
    assert provider is None or provider.startswith("ws://127.0.0.1:"), provider
    assert report["provider_trouble"] is None
    assert set(report["queue"]) == QUEUE_KEYS | QUEUE_EXTRA
    assert all(isinstance(v, int) for v in report["queue"].values())
    for row in report["positions"]:
        assert set(row) == POSITION_KEYS | POSITION_EXTRA, row
        assert isinstance(row["parked"], bool)
        for key in ("onchain_net_shares", "hedged_shares", "in_flight_shares", "unhedged_shares"):
            assert isinstance(row[key], str) and PLAIN_DECIMAL.match(row[key]), row
            assert row[key] != "-0", row
        total = (
            Decimal(row["onchain_net_shares"])
            + Decimal(row["hedged_shares"])
            + Decimal(row["in_flight_shares"])
        )
        assert Decimal(row["unhedged_shares"]) == total, row
    for execution in report["executions"]:
        _check_execution_shape(execution)


def _check_execution_shape(execution: dict[str, Any]) -> None:
    assert set(execution) == EXECUTION_KEYS | EXECUTION_EXTRA, execution
    assert isinstance(execution["id"], int)
    assert execution["direction"] in ("BUY", "SELL")
    assert WHOLE_SHARES.match(execution["shares"]), execution
    assert PLAIN_DECIMAL.match(execution["filled_shares"]), execution
    assert execution["status"] in ("PENDING", "SUBMITTED", "FILLED", "REJECTED", "CANCELLED")
    assert isinstance(execution["client_order_id"], str) and execution["client_order_id"]


def _our_order(receives: str, gives: str, rng: random.Random) -> OrderSpec:
    return OrderSpec(
        owner=US,
        inputs=(receives,),
        outputs=(gives,),
        input_index=0,
        output_index=0,
        vault_id=rng.getrandbits(256),
        nonce=rng.randbytes(32),
        interpreter=rng.randbytes(20),
        store=rng.randbytes(20),
        bytecode=b"",
    )


def _buy(symbol: str, shares: str, rng: random.Random) -> TakeFill:
    """Our order receives ``shares`` of ``symbol`` for USDC: an on-chain BUY."""
    amount = int(Decimal(shares) * ONE)
    return TakeFill(_our_order(symbol, "USDC", rng), amount, amount * 150 // ONE * 10**6, ())


def _sell(symbol: str, shares: str, rng: random.Random) -> TakeFill:
    """Our order gives ``shares`` of ``symbol`` for USDC: an on-chain SELL."""
    amount = int(Decimal(shares) * ONE)
    return TakeFill(_our_order("USDC", symbol, rng), amount * 150 // ONE * 10**6, amount, ())


def _send(chain: Chain, deployment: Deployment, *fills: TakeFill) -> PlannedTx:
    tx = PlannedTx(tuple(fills))
    sender = TxSender(chain.rpc)
    send_planned(sender, tx, deployment)
    sender.flush()
    return tx


def _wait_status(
    database: Path, bot: BotProcess, what: str, condition: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        if not bot.running():
            raise AssertionError("bot exited:\n" + bot.log_tail())
        report = queries.status(database)
        return report if condition(report) else None

    return wait_for(check, timeout_s=30, what=what, on_timeout=bot.log_tail)


# ----------------------------------------------------------------------------- read commands


def test_read_commands_print_the_contract_while_the_bot_runs(chain: Chain, tmp_path: Path) -> None:
    database = tmp_path / "bot.db"
    config = write_config(
        tmp_path / "bot.toml",
        chain.deployment,
        ws_url=chain.ws_url,
        database=database,
        first_event_timeout_s=0.5,
    )
    before = make_plan(seed=71, fills=30)
    run_plan(chain.rpc, chain.deployment, before)
    live = make_plan(seed=72, fills=20)
    bot = BotProcess(config).start()
    try:
        bot.wait_for_log("live: following heads")
        run_plan(chain.rpc, chain.deployment, live)
        head = _head(chain)
        wait_caught_up(database, head, bot=bot)
        versions = _schema_versions(database)
        # the bot holds the lock: these must not need it
        status = _cli_json(config, "status")
        trades = _cli_json(config, "trades")
        executions = _cli_json(config, "executions")
        assert bot.running()
        assert _schema_versions(database) == versions == [m.version for m in load_migrations()]
    finally:
        code = bot.stop()
    assert code == 0, bot.log_tail()

    _check_status_shape(status)
    assert status["idle"] is True
    assert status["checkpoint_block"] == head
    assert status["head_block"] == head
    assert status["queue"]["pending"] == 0 and status["queue"]["failed"] == 0
    plan = [*before, *live]
    net = {p["ticker"]: Decimal(p["onchain_net_shares"]) for p in status["positions"]}
    assert net == expected_net(plan)
    for row in status["positions"]:
        assert not row["parked"] and abs(Decimal(row["unhedged_shares"])) < 1, row

    # trades: every fill of ours once, oldest first, summing to the on-chain net
    assert isinstance(trades, list)
    assert len(trades) == sum(len(our_share_deltas(tx)) for tx in plan)
    assert [t["id"] for t in trades] == sorted(t["id"] for t in trades)
    by_ticker: dict[str, Decimal] = {}
    for trade in trades:
        assert PLAIN_DECIMAL.match(trade["shares"]) and trade["kind"] == "fill", trade
        by_ticker[trade["ticker"]] = by_ticker.get(trade["ticker"], Decimal(0)) + _signed(
            trade["direction"], trade["shares"]
        )
    assert by_ticker == net

    # executions: an array, oldest first; the status lists the most recent of the same rows
    assert isinstance(executions, list) and executions
    ids = [e["id"] for e in executions]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for execution in executions:
        _check_execution_shape(execution)
        assert execution["status"] == "FILLED" and execution["filled_shares"] == execution["shares"]
    assert status["executions"] == executions[-20:]
    for row in status["positions"]:
        hedged = sum(
            (
                _signed(e["direction"], e["filled_shares"])
                for e in executions
                if e["ticker"] == row["ticker"]
            ),
            Decimal(0),
        )
        assert Decimal(row["hedged_shares"]) == hedged, row
        assert row["in_flight_shares"] == "0"


def _offline_config(tmp_path: Path, database: Path) -> Path:
    """A config whose chain endpoints are closed ports: the read commands must not need them."""
    address = to_checksum_address("0x" + "12" * 20)
    owner = to_checksum_address("0x" + "34" * 20)
    path = tmp_path / "offline.toml"
    path.write_text(
        f"""
[chain]
ws_url = "ws://127.0.0.1:9"

[orderbook]
address = "{address}"
deployment_block = 0
order_owner = "{owner}"

[database]
path = "{database}"

[metrics]
port = 0
"""
    )
    return path


def test_missing_database_is_a_clear_error_and_creates_nothing(tmp_path: Path) -> None:
    database = tmp_path / "absent.db"
    config = _offline_config(tmp_path, database)
    for args in (
        ("status", "--json"),
        ("trades", "--json"),
        ("executions", "--json"),
        ("retry",),
        ("unpark", "AAPL"),
    ):
        result = _cli(config, *args)
        assert result.returncode == 1, (args, result.stderr)
        assert f"no database at {database}" in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr, (args, result.stderr)
        assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["offline.toml"], "nothing created"


def test_read_commands_never_migrate(tmp_path: Path) -> None:
    database = tmp_path / "old.db"
    first = load_migrations()[0]
    conn = sqlite3.connect(database, isolation_level=None)
    conn.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
        " applied_at TEXT NOT NULL)"
    )
    for statement in split_statements(first.sql):
        conn.execute(statement)
    conn.execute("INSERT INTO schema_migrations VALUES (?, ?, 'then')", (first.version, first.name))
    conn.close()
    config = _offline_config(tmp_path, database)
    for args in (("status", "--json"), ("trades",), ("executions", "--json")):
        result = _cli(config, *args)
        assert result.returncode == 1, (args, result.stderr)
        assert "schema versions [1]" in result.stderr, result.stderr
        assert "run `bot run` or `bot backfill` once to migrate it" in result.stderr
        assert "Traceback" not in result.stderr
    assert _schema_versions(database) == [1]
    columns = {r[1] for r in _query(database, "PRAGMA table_info(events)")}
    assert "compensate" not in columns, "migration 0002 was applied by a read command"

    newer = len(load_migrations()) + 1
    conn = sqlite3.connect(database, isolation_level=None)
    conn.execute("INSERT INTO schema_migrations VALUES (?, 'future', 'later')", (newer,))
    conn.close()
    result = _cli(config, "status", "--json")
    assert result.returncode == 1
    assert "written by a newer version of the bot" in result.stderr, result.stderr


# ----------------------------------------------------------------------------- admin marks


def _failed_event_ids(database: Path) -> list[int]:
    return [int(r[0]) for r in _query(database, "SELECT id FROM events WHERE status = 'failed'")]


def _copy_token(chain: Chain, source: str, target: str) -> None:
    """Give ``target`` the code and name/symbol/decimals slots of the token at ``source``."""
    code = chain.rpc.call("eth_getCode", [source, "latest"])
    chain.rpc.call("anvil_setCode", [target, code])
    for slot in range(3):  # TestToken: name, symbol, decimals (short strings are inline)
        value = chain.rpc.call("eth_getStorageAt", [source, hex(slot), "latest"])
        chain.rpc.call("anvil_setStorageAt", [target, hex(slot), value])


def test_admin_marks_act_on_the_running_bot(chain: Chain, tmp_path: Path) -> None:
    rng = random.Random(81)
    database = tmp_path / "bot.db"
    config = write_config(
        tmp_path / "bot.toml",
        chain.deployment,
        ws_url=chain.ws_url,
        database=database,
        first_event_timeout_s=0.5,
    )
    sent = [_send(chain, chain.deployment, _buy("AAPLs1", "2.5", rng))]
    bot = BotProcess(config).start()
    try:
        bot.wait_for_log("live: following heads")
        report = wait_caught_up(database, _head(chain), bot=bot)
        assert _position(report, "AAPL")["unhedged_shares"] == "0.5"
    finally:
        code = bot.stop()
    assert code == 0, bot.log_tail()

    # The dry-run broker never rejects, so max_rejections cannot park a ticker here (the
    # accumulator tests cover that rule): park AAPL in the database while the bot is down.
    conn = sqlite3.connect(database, isolation_level=None)
    conn.execute("UPDATE positions SET parked = 1 WHERE ticker = 'AAPL'")
    conn.close()

    bogus_1 = to_checksum_address("0x" + "b1" * 20)  # no code: symbol() cannot be read
    bogus_2 = to_checksum_address("0x" + "b2" * 20)
    with_bogus = dataclasses.replace(
        chain.deployment,
        tokens={
            **chain.deployment.tokens,
            "BOGUS1": DeployedToken("BOGUS1", bogus_1, 18),
            "BOGUS2": DeployedToken("BOGUS2", bogus_2, 18),
        },
    )
    bot = BotProcess(config).start()
    try:
        bot.wait_for_log("live: following heads")
        sent.append(_send(chain, chain.deployment, _buy("AAPLs1", "1.5", rng)))
        report = wait_caught_up(database, _head(chain), bot=bot)
        aapl = _position(report, "AAPL")
        assert (aapl["parked"], aapl["onchain_net_shares"], aapl["unhedged_shares"]) == (
            True,
            "4",
            "2",
        )
        assert len(report["executions"]) == 1, "a parked ticker got an order"
        assert report["idle"] is True, "a parked ticker's unhedged amount does not block idle"

        result = _cli(config, "unpark", "AAPL")
        assert (result.returncode, result.stdout.strip()) == (0, "AAPL unparked"), result.stderr
        report = _wait_status(
            database,
            bot,
            "AAPL hedged again after unpark, its order booked",
            # unhedged counts in-flight shares: it reads 0 while the order is still PENDING
            lambda r: (
                _position(r, "AAPL")["unhedged_shares"] == "0"
                and _position(r, "AAPL")["in_flight_shares"] == "0"
            ),
        )
        assert _position(report, "AAPL")["parked"] is False
        assert [(e["direction"], e["shares"], e["status"]) for e in report["executions"]] == [
            ("SELL", "2", "FILLED"),
            ("SELL", "2", "FILLED"),
        ]
        result = _cli(config, "unpark", "AAPL")
        assert (result.returncode, result.stdout.strip()) == (0, "AAPL was not parked")
        result = _cli(config, "unpark", "NOPE")
        assert result.returncode == 1 and "no position for ticker 'NOPE'" in result.stderr

        # two fills of ours whose tokens cannot be read: both fail and pause new executions
        _send(
            chain,
            with_bogus,
            TakeFill(_our_order("BOGUS1", "USDC", rng), 0, 0, ()),
            TakeFill(_our_order("BOGUS2", "USDC", rng), 0, 0, ()),
        )
        report = _wait_status(
            database, bot, "two failed events", lambda r: r["queue"]["failed"] == 2
        )
        skipped_id, retried_id = _failed_event_ids(database)
        assert report["idle"] is False and len(report["paused_reasons"]) == 2
        sent.append(_send(chain, chain.deployment, _sell("AAPLs1", "3", rng)))
        report = wait_caught_up(database, _head(chain), bot=bot)
        assert _position(report, "AAPL")["unhedged_shares"] == "-3"
        assert len(report["executions"]) == 2, "executions are paused"
        assert report["idle"] is False

        result = _cli(config, "skip", str(skipped_id), "--reason", "bogus test token")
        assert (result.returncode, result.stdout.strip()) == (0, f"event {skipped_id} skipped")
        ((status, reason),) = _query(
            database, "SELECT status, reason FROM events WHERE id = ?", skipped_id
        )
        assert status == "skipped" and "bogus test token" in reason
        assert _failed_event_ids(database) == [retried_id]

        _copy_token(chain, chain.deployment.tokens["WETH"].address, bogus_2)  # the cause, fixed
        result = _cli(config, "retry", str(retried_id))
        assert (result.returncode, result.stdout.strip()) == (0, f"event {retried_id} queued again")
        report = _wait_status(
            database,
            bot,
            "the retried event processed and the paused hedge placed",
            lambda r: _position(r, "AAPL")["unhedged_shares"] == "0" and r["idle"],
        )
        assert _query(database, "SELECT status FROM events WHERE id = ?", retried_id) == [
            ("processed",)
        ]
        assert report["executions"][-1]["direction"] == "BUY"
        assert report["executions"][-1]["shares"] == "3"
        assert report["paused_reasons"] == [] and report["queue"]["failed"] == 0
        assert report["queue"]["skipped"] == 1

        result = _cli(config, "retry", str(retried_id))
        assert result.returncode == 1
        assert f"cannot retry event {retried_id}: it is processed, not failed" in result.stderr
        assert _cli(config, "skip", str(retried_id)).returncode == 2  # --reason is required
    finally:
        code = bot.stop()
    assert code == 0, bot.log_tail()
    final = {p["ticker"]: Decimal(p["onchain_net_shares"]) for p in report["positions"]}
    assert final == expected_net(sent) == {"AAPL": Decimal(1)}
