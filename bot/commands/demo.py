"""``bot demo``: a local devnet with continuous simulated fills, and the bot hedging them live.

Everything runs on embedded defaults: anvil on a free port, the test contracts, a config and an
SQLite database under ``.devnet/``, and the dry-run broker — or, with ``--broker alpaca``, the
real Alpaca client against the local fake Alpaca server (``bot.devnet.fake_alpaca``) in a
thread. A status view is printed every few seconds, shares rounded to 4 decimals and prices to
the cent (the database, ``status --json`` and the logs keep exact values); the hedges are also
logged as they happen. Ctrl-C (or ``--duration``) stops it, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from bot.commands.service import run_until_stopped
from bot.config import LoadedConfig, load
from bot.core import amounts
from bot.devnet.cli import launch_devnet, merge_expected, start_background_simulation
from bot.devnet.state import DEFAULT_DIR
from bot.store import queries

if TYPE_CHECKING:  # imports web3 (~0.7 s), which only `bot demo` itself needs
    from bot.devnet.simulate import BackgroundSimulation

Handler = Callable[[argparse.Namespace], int]
CATCH_UP_S = 15.0


SHARES_SHOWN = Decimal("0.0001")
"""Shares are shown to 4 decimals, USDC to the cent; the database and JSON keep exact values."""
CENTS = Decimal("0.01")


def _rounded(value: object, places: Decimal) -> str:
    """``value`` (an exact decimal string or Decimal) rounded half-up to ``places`` for a person;
    a value that rounds to zero shows as 0 (no "-0.0000")."""
    shown = amounts.from_text(str(value)).quantize(places, rounding=ROUND_HALF_UP)
    return f"{shown if shown != 0 else abs(shown)}"


def shares_for_people(value: object) -> str:
    """``"12.3457"`` for ``"12.345678901234567890"``."""
    return _rounded(value, SHARES_SHOWN)


def usdc_for_people(value: object) -> str:
    """``"$190.24"`` for ``"190.2351"``."""
    return f"${_rounded(value, CENTS)}"


def _render(report: dict[str, object], expected: dict[str, Decimal]) -> str:
    """The status view, amounts rounded for reading (``bot status --json`` has them exact)."""
    lines = [
        f"--- status: checkpoint {report['checkpoint_block']}, head {report['head_block']}, "
        f"idle {str(report['idle']).lower()}, queue {report['queue']}"
    ]
    positions = report.get("positions") or []
    assert isinstance(positions, list)
    for p in positions:
        chain = expected.get(p["ticker"])
        target = "" if chain is None else f" (devnet sent {shares_for_people(chain)})"
        lines.append(
            f"    {p['ticker']:<6} on-chain {shares_for_people(p['onchain_net_shares'])}{target}, "
            f"hedged {shares_for_people(p['hedged_shares'])}, in flight "
            f"{shares_for_people(p['in_flight_shares'])}, unhedged "
            f"{shares_for_people(p['unhedged_shares'])}{'  PARKED' if p['parked'] else ''}"
        )
    executions = report.get("executions") or []
    assert isinstance(executions, list)
    for e in executions[-5:]:
        price = "" if e["avg_price"] is None else f" at {usdc_for_people(e['avg_price'])}"
        lines.append(
            f"    hedge #{e['id']}: {e['direction']} {e['shares']} {e['ticker']} -> "
            f"{e['status']} ({shares_for_people(e['filled_shares'])} filled{price})"
        )
    return "\n".join(lines)


async def _report(
    loaded: LoadedConfig, every_s: float, expected: Callable[[], dict[str, Decimal]]
) -> None:
    while True:
        await asyncio.sleep(every_s)
        if not loaded.database_path.exists():
            continue
        with contextlib.suppress(Exception):  # the view must never stop the bot
            report = await asyncio.to_thread(queries.status, loaded.database_path, confirmations=0)
            print(_render(report, expected()), flush=True)


async def _finish_after(
    seconds: float,
    loaded: LoadedConfig,
    simulation: BackgroundSimulation,
    stop: asyncio.Event,
    head: Callable[[], int],
) -> None:
    """At the end of ``--duration``: stop the fills, let the bot book the last ones, then stop
    it, so the final view adds up (bounded: a bot that cannot catch up is stopped anyway)."""
    await asyncio.sleep(seconds)
    await asyncio.to_thread(simulation.stop)
    target = await asyncio.to_thread(head)
    deadline = time.monotonic() + CATCH_UP_S
    while time.monotonic() < deadline:
        report = await asyncio.to_thread(queries.status, loaded.database_path, confirmations=0)
        checkpoint = report["checkpoint_block"]
        if checkpoint is not None and checkpoint >= target and report["idle"]:
            break
        await asyncio.sleep(0.1)
    stop.set()


async def _demo_async(
    loaded: LoadedConfig,
    *,
    duration: float | None,
    every_s: float,
    simulation: BackgroundSimulation,
    expected: Callable[[], dict[str, Decimal]],
    head: Callable[[], int],
) -> None:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(_report(loaded, every_s, expected))]
    if duration is not None:
        tasks.append(asyncio.create_task(_finish_after(duration, loaded, simulation, stop, head)))
    try:
        await run_until_stopped(loaded, stop)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _demo(args: argparse.Namespace) -> int:
    state_dir: Path = args.dir
    with launch_devnet(state_dir, fills=args.fills, seed=args.seed) as devnet:
        print(
            f"devnet up at {devnet.ws_url}: orderbook {devnet.deployment.orderbook}, our order "
            f"owner {devnet.deployment.order_owner}; {args.fills} fills before the bot starts, "
            f"then {args.rate} fills/s. Ctrl-C stops.",
            flush=True,
        )
        simulation = start_background_simulation(devnet, seed=args.seed, rate=args.rate)

        def expected() -> dict[str, Decimal]:
            return merge_expected(devnet.expected, simulation.snapshot().expected)

        def head() -> int:
            from bot.devnet.contracts import connect  # noqa: PLC0415 (web3, loaded by now)

            with connect(devnet.http_url) as w3:
                return int(w3.eth.block_number)

        try:
            with _broker_env(args.broker) as environ:
                loaded = load(devnet.paths.config, environ)
                asyncio.run(
                    _demo_async(
                        loaded,
                        duration=args.duration,
                        every_s=args.every,
                        simulation=simulation,
                        expected=expected,
                        head=head,
                    )
                )
        finally:
            stats = simulation.stop()
        print(f"demo stopped: {stats.fills} fills simulated while the bot ran", flush=True)
        if loaded.database_path.exists():
            report = queries.status(loaded.database_path, confirmations=0)
            print(_render(report, expected()))
            pending = report["queue"]["pending"]
            if pending:
                print(
                    f"{pending} event(s) arrived after the last block the bot reconciled; "
                    "`bot run` books them at its next start (nothing is lost)"
                )
    return 0


@contextlib.contextmanager
def _broker_env(kind: str) -> Iterator[dict[str, str]]:
    """The environment the bot's config is loaded with: with ``alpaca``, a fake Alpaca server
    runs in a thread for as long as the demo does, and the config points at it."""
    if kind != "alpaca":
        yield dict(os.environ)
        return
    from bot.devnet.fake_alpaca import FakeAlpaca  # noqa: PLC0415 (only for this mode)
    from bot.devnet.plan import START_PRICES  # noqa: PLC0415

    fake = FakeAlpaca(fill_steps=3, step_s=0.3)
    for symbol, price in START_PRICES.items():
        ticker = symbol.removesuffix("s1").removesuffix("0x").removeprefix("wt")
        fake.set_price(ticker, price)
    with fake.serve_in_thread() as base_url:
        print(f"fake Alpaca API at {base_url} (orders fill in 3 steps)", flush=True)
        yield {
            **os.environ,
            "BOT__BROKER__KIND": "alpaca",
            "BOT__BROKER__ALPACA__BASE_URL": base_url,
            "BOT__BROKER__ALPACA__API_KEY_ID": "fake-key-id",
            "BOT__BROKER__ALPACA__API_SECRET": "fake-secret",
            "BOT__BROKER__ALPACA__POLL_INTERVAL_S": "0.3",
            "BOT__BROKER__RECONCILE_EVERY_S": "2",
        }


def register(command: Callable[[str, Handler, str], argparse.ArgumentParser]) -> None:
    sub = command(
        "demo", _demo, "local devnet + simulated fills + the bot hedging them (dry-run broker)"
    )
    sub.add_argument(
        "--broker",
        choices=("dry-run", "alpaca"),
        default="dry-run",
        help="dry-run (default), or alpaca: the real client against a local fake Alpaca server",
    )
    sub.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="state directory (.devnet)")
    sub.add_argument("--fills", type=int, default=40, help="fills before the bot starts (40)")
    sub.add_argument("--rate", type=float, default=2.0, help="fills per second after that (2)")
    sub.add_argument("--seed", type=int, default=1, help="seed of the simulated fills (1)")
    sub.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    sub.add_argument("--every", type=float, default=5.0, help="seconds between status views (5)")
