"""``bot doctor [--json]``: one line per check, ``ok`` or the problem and its fix (SPEC §10).

Exit 0 only when every check passes (a skipped one, such as the block-time check on a devnet,
passes); 3 when the config does not load; 1 for any other failing check. ``--json`` prints
``{"ok": bool, "checks": [{"name", "ok", "skipped", "detail", "fix"}]}`` instead. No lock, no
database write, no secret printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from bot.doctor import DEFAULT_TIMEOUT_S, CheckResult, lines, report, run_doctor

Handler = Callable[[argparse.Namespace], int]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 3


def exit_code(results: list[CheckResult]) -> int:
    if all(r.ok for r in results):
        return EXIT_OK
    config_failed = any(r.name == "config" and not r.ok for r in results) and len(results) == 1
    return EXIT_CONFIG if config_failed else EXIT_FAILED


async def doctor(
    config_path: Path | str, *, as_json: bool = False, timeout_s: float = DEFAULT_TIMEOUT_S
) -> int:
    """Run every check, print the lines (or the JSON object), return the exit code."""
    results = await run_doctor(config_path, timeout_s=timeout_s)
    if as_json:
        print(json.dumps(report(results)))
    else:
        for line in lines(results):
            print(line)
    return exit_code(results)


def _doctor(args: argparse.Namespace) -> int:
    return asyncio.run(doctor(args.config, as_json=args.json))


def register(command: Callable[[str, Handler, str], argparse.ArgumentParser]) -> None:
    sub = command(
        "doctor",
        _doctor,
        "check config, providers, orderbook, database, broker, clock, disk and secrets",
    )
    sub.add_argument("--json", action="store_true", help="print one JSON object")
