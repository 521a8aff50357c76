"""``bot status``, ``bot trades``, ``bot executions``: read-only (no lock, no migration, no
network), safe while ``run`` is running."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from bot.config import load
from bot.store import queries

Handler = Callable[[argparse.Namespace], int]


def _print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    if not rows:
        print("(none)")
        return
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns))


def _status(args: argparse.Namespace) -> int:
    loaded = load(args.config)
    report = queries.status(loaded.database_path, confirmations=loaded.settings.live.confirmations)
    if args.json:
        print(json.dumps(report))
        return 0
    queue = report["queue"]
    print(
        f"idle: {str(report['idle']).lower()}   checkpoint: {report['checkpoint_block']}   "
        f"head: {report['head_block']}"
    )
    print("queue: " + ", ".join(f"{k} {v}" for k, v in queue.items()))
    print(f"provider: {report['provider'] or '(none recorded)'}")
    if report["provider_trouble"]:
        print(f"PROVIDER TROUBLE: {report['provider_trouble']}")
    for reason in report.get("paused_reasons", []):
        print(f"EXECUTIONS PAUSED: {reason}")
    for mismatch in report.get("decimals_mismatches", []):
        print(f"decimals mismatch: {mismatch['token']}: {mismatch['detail']}")
    print("\npositions:")
    _print_table(
        report["positions"],
        [
            "ticker",
            "onchain_net_shares",
            "hedged_shares",
            "in_flight_shares",
            "unhedged_shares",
            "parked",
        ],
    )
    print("\nexecutions (in flight and the 20 most recent):")
    _print_table(report["executions"], _EXECUTION_COLUMNS)
    return 0


_EXECUTION_COLUMNS = [
    "id",
    "ticker",
    "direction",
    "shares",
    "filled_shares",
    "status",
    "client_order_id",
]


def _trades(args: argparse.Namespace) -> int:
    rows = queries.trades(load(args.config).database_path)
    if args.json:
        print(json.dumps(rows))
        return 0
    columns = [
        "id",
        "block_number",
        "ticker",
        "direction",
        "shares",
        "price_usdc",
        "side",
        "kind",
        "tx_hash",
    ]
    _print_table(rows, columns)
    return 0


def _executions(args: argparse.Namespace) -> int:
    rows = queries.executions(load(args.config).database_path)
    if args.json:
        print(json.dumps(rows))
        return 0
    _print_table(rows, _EXECUTION_COLUMNS)
    return 0


def register(command: Callable[[str, Handler, str], argparse.ArgumentParser]) -> None:
    for name, handler, text in (
        ("status", _status, "positions, queue, executions and whether the bot is idle"),
        ("trades", _trades, "every trade booked, oldest first"),
        ("executions", _executions, "every broker execution, oldest first"),
    ):
        sub = command(name, handler, text)
        sub.add_argument("--json", action="store_true", help="print JSON")
