"""``bot devnet …``: start anvil, deploy the test contracts, write a bot config, simulate fills.

Wired into ``bot.cli`` by ``add_devnet_parser``; also runnable alone as
``python -m bot.devnet.cli …`` (same arguments, without the leading ``devnet``).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from bot.core import amounts
from bot.devnet.anvil import AnvilProcess
from bot.devnet.plan import count_fills, expected_net, make_plan
from bot.devnet.rpc import DevnetError
from bot.devnet.state import DEFAULT_DIR, StatePaths, read_expected, write_expected, write_state
from bot.errors import BotError

if TYPE_CHECKING:
    # These import web3 (~0.7 s): every `bot` command imports this module for its parser, so
    # they are imported where a devnet command runs.
    from bot.devnet.deploy import Deployment
    from bot.devnet.simulate import BackgroundSimulation

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
CONTINUOUS_SEED_OFFSET = 1_000_003
"""The continuous stream uses ``seed + offset`` so it does not replay the initial fills."""


@dataclass(frozen=True)
class Devnet:
    """A running devnet: where to reach it and what is deployed (see ``launch_devnet``)."""

    http_url: str
    ws_url: str
    deployment: Deployment
    paths: StatePaths
    anvil: AnvilProcess | None
    expected: dict[str, Decimal]


def _ws_from_http(url: str) -> str:
    if url.startswith("https://"):
        return "wss://" + url.removeprefix("https://")
    return "ws://" + url.removeprefix("http://")


@contextmanager
def launch_devnet(
    state_dir: Path = DEFAULT_DIR,
    *,
    rpc_url: str | None = None,
    ws_url: str | None = None,
    fills: int = 0,
    seed: int = 1,
) -> Iterator[Devnet]:
    """Start anvil (unless ``rpc_url`` is given), deploy, run ``fills`` seeded fills and write
    deployment.json, expected.json and config.toml under ``state_dir``; anvil stops on exit.

    A fresh anvil makes any old ``bot.db`` in ``state_dir`` meaningless, so it is removed.
    """
    from bot.devnet.contracts import connect  # noqa: PLC0415 (web3: see the imports above)
    from bot.devnet.deploy import deploy  # noqa: PLC0415
    from bot.devnet.simulate import run_plan  # noqa: PLC0415

    paths = StatePaths(state_dir)
    paths.root.mkdir(parents=True, exist_ok=True)
    anvil: AnvilProcess | None = None
    if rpc_url is None:
        for suffix in ("", "-wal", "-shm"):
            paths.database.with_name(paths.database.name + suffix).unlink(missing_ok=True)
        anvil = AnvilProcess(paths.anvil_log).start()
        http_url, ws = anvil.http_url, anvil.ws_url
    else:
        http_url, ws = rpc_url, ws_url or _ws_from_http(rpc_url)
    try:
        with connect(http_url) as w3:
            deployment = deploy(w3)
            plan = make_plan(seed, fills)
            run_plan(w3, deployment, plan)
        expected = expected_net(plan)
        write_state(paths, deployment, ws_url=ws, http_url=http_url, expected=expected)
        yield Devnet(http_url, ws, deployment, paths, anvil, expected)
    finally:
        if anvil is not None:
            anvil.stop()


def start_background_simulation(
    devnet: Devnet, *, seed: int = 1, rate: float = 2.0, duration_s: float | None = None
) -> BackgroundSimulation:
    """Send fills at ``rate`` per second in a daemon thread; ``.stop()`` returns the stats.

    Its ``snapshot().expected`` holds only the fills it sent: add ``devnet.expected``.
    """
    from bot.devnet.simulate import BackgroundSimulation  # noqa: PLC0415 (web3)

    return BackgroundSimulation(
        devnet.http_url,
        devnet.deployment,
        seed=seed + CONTINUOUS_SEED_OFFSET,
        rate=rate,
        duration_s=duration_s,
    ).start()


def merge_expected(*nets: dict[str, Decimal]) -> dict[str, Decimal]:
    merged: dict[str, Decimal] = {}
    for net in nets:
        for ticker, value in net.items():
            merged[ticker] = amounts.add(merged.get(ticker, amounts.ZERO), value)
    return dict(sorted(merged.items()))


def _print_expected(net: dict[str, Decimal]) -> None:
    print("expected on-chain net shares of our fills:")
    for ticker, value in sorted(net.items()):
        print(f"  {ticker}: {amounts.to_text(value)}")
    sys.stdout.flush()


def _follow(
    devnet: Devnet, args: argparse.Namespace, base: dict[str, Decimal]
) -> dict[str, Decimal]:
    """Keep the chain up (simulating at ``--rate`` if given) until Ctrl-C or ``--duration``."""
    stop = threading.Event()
    deadline = None if args.duration is None else time.monotonic() + args.duration
    sim = start_background_simulation(devnet, seed=args.seed, rate=args.rate) if args.rate else None
    how = f"simulating {args.rate} fills/s" if sim else "chain up"
    until = f"for {args.duration} s" if deadline is not None else "until Ctrl-C"
    print(f"{how}, {until}", flush=True)
    try:
        while not stop.wait(
            0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
        ):
            if deadline is not None and time.monotonic() >= deadline:
                break
            if sim is not None:
                if not sim.is_alive():
                    raise DevnetError(f"simulation stopped: {sim.error!r}")
                write_expected(devnet.paths.expected, merge_expected(base, sim.snapshot().expected))
            if devnet.anvil is not None and not devnet.anvil.is_running():
                raise DevnetError(f"anvil exited; log tail:\n{devnet.anvil.log_tail()}")
    except KeyboardInterrupt:
        print("stopping", flush=True)
    finally:
        if sim is not None:
            stats = sim.stop()
            base = merge_expected(base, stats.expected)
            write_expected(devnet.paths.expected, base)
            print(f"simulated {stats.fills} more fills in {stats.transactions} transactions")
    return base


def _up(args: argparse.Namespace) -> int:
    state_dir: Path = args.dir
    started = time.monotonic()
    with launch_devnet(state_dir, rpc_url=args.rpc_url, fills=args.fills, seed=args.seed) as devnet:
        print(
            f"devnet ready in {time.monotonic() - started:.2f} s: http {devnet.http_url}  "
            f"ws {devnet.ws_url}\n  orderbook {devnet.deployment.orderbook} "
            f"(block {devnet.deployment.deployment_block}), order owner "
            f"{devnet.deployment.order_owner}\n  {args.fills} fills simulated; "
            f"config: {devnet.paths.config}"
        )
        expected = devnet.expected
        _print_expected(expected)
        if args.expected_json is not None:
            write_expected(args.expected_json, expected)  # now, and again after following
        if args.rate or args.keep_running or args.duration is not None:
            expected = _follow(devnet, args, expected)
            _print_expected(expected)
        if args.expected_json is not None:
            write_expected(args.expected_json, expected)
    return EXIT_OK


def _simulate(args: argparse.Namespace) -> int:
    """Send more fills to a devnet started by ``up --keep-running`` (reads its state dir)."""
    from bot.devnet.contracts import connect  # noqa: PLC0415 (web3: see the imports above)
    from bot.devnet.deploy import Deployment  # noqa: PLC0415
    from bot.devnet.simulate import run_plan  # noqa: PLC0415

    paths = StatePaths(args.dir)
    if not paths.deployment.is_file():
        print(f"no {paths.deployment}: run `bot devnet up --keep-running` first", file=sys.stderr)
        return EXIT_USAGE
    deployment = Deployment.load(paths.deployment)
    rpc_url = args.rpc_url or _http_url_from_config(paths.config)
    with connect(rpc_url) as w3:
        plan = make_plan(args.seed, args.fills)
        run_plan(w3, deployment, plan)
    previous = read_expected(paths.expected) if paths.expected.is_file() else {}
    merged = merge_expected(previous, expected_net(plan))
    write_expected(paths.expected, merged)
    if args.expected_json is not None:
        write_expected(args.expected_json, merged)
    print(f"simulated {count_fills(plan)} fills")
    _print_expected(merged)
    return EXIT_OK


def _http_url_from_config(path: Path) -> str:
    data = tomllib.loads(path.read_text())
    url = str(data.get("chain", {}).get("http_url", ""))
    if not url:
        raise DevnetError(f"{path} has no chain.http_url; pass --rpc-url")
    return url


def handle_devnet(args: argparse.Namespace) -> int:
    """Run a parsed ``devnet`` command: 0 ok, 1 runtime error, 2 usage."""
    if getattr(args, "fills", 0) < 0 or (getattr(args, "rate", None) or 0) < 0:
        print("--fills and --rate must not be negative", file=sys.stderr)
        return EXIT_USAGE
    if getattr(args, "duration", None) is not None and args.duration < 0:
        print("--duration must not be negative", file=sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.devnet_action(args))
    except BotError as exc:
        print(f"devnet error: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        return EXIT_OK


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="state directory (.devnet)")
    parser.add_argument("--rpc-url", help="use this running node instead of starting anvil")
    parser.add_argument("--fills", type=int, default=50, help="fills to simulate (default 50)")
    parser.add_argument("--seed", type=int, default=1, help="plan seed (default 1)")
    parser.add_argument(
        "--expected-json", type=Path, help="also write the expected per-ticker net here"
    )


def add_devnet_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``devnet up`` and ``devnet simulate``; sets ``handler=handle_devnet`` on the args."""
    devnet = subparsers.add_parser(
        "devnet", help="local anvil devnet with test contracts and simulated fills"
    )
    actions = devnet.add_subparsers(dest="devnet_command", metavar="ACTION", required=True)
    up = actions.add_parser(
        "up", help="start anvil, deploy, write .devnet/config.toml, simulate fills"
    )
    _common(up)
    up.add_argument("--rate", type=float, help="then keep simulating this many fills per second")
    up.add_argument("--duration", type=float, help="stop after this many seconds")
    up.add_argument("--keep-running", action="store_true", help="keep the chain up until Ctrl-C")
    up.set_defaults(handler=handle_devnet, devnet_action=_up)
    simulate = actions.add_parser("simulate", help="send more fills to a running devnet")
    _common(simulate)
    simulate.set_defaults(handler=handle_devnet, devnet_action=_simulate)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bot.devnet.cli up …``: the devnet commands without the rest of the bot."""
    parser = argparse.ArgumentParser(prog="python -m bot.devnet.cli")
    add_devnet_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["devnet", *(argv if argv is not None else sys.argv[1:])])
    return handle_devnet(args)


if __name__ == "__main__":
    raise SystemExit(main())
