"""``python -m bot.devnet.fake_alpaca --port N``: serve the fake until SIGINT/SIGTERM.

Prints one flushed line ``listening on http://127.0.0.1:PORT`` once it accepts connections
(``--port 0`` picks a free port), so a parent process can read the URL from stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from decimal import Decimal

from bot.devnet.fake_alpaca.server import FakeAlpaca


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot.devnet.fake_alpaca", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--key-id", default="fake-key-id")
    parser.add_argument("--secret", default="fake-secret")
    parser.add_argument("--account-id", default="fake-account-0001")
    parser.add_argument("--fill-steps", type=int, default=1)
    parser.add_argument("--step-s", type=float, default=0.05)
    parser.add_argument("--buying-power", type=Decimal, default=Decimal("1000000"))
    parser.add_argument("--rate-limit-per-min", type=int, default=200)
    parser.add_argument("--lookup-lag-s", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--market-closed", action="store_true", help="start with the market closed")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeAlpaca(
        key_id=args.key_id,
        secret=args.secret,
        account_id=args.account_id,
        fill_steps=args.fill_steps,
        step_s=args.step_s,
        buying_power=args.buying_power,
        rate_limit_per_min=args.rate_limit_per_min,
        lookup_lag_s=args.lookup_lag_s,
        seed=args.seed,
    )
    if args.market_closed:
        fake.set_clock(is_open=False)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    url = await fake.start(args.host, args.port)
    print(f"listening on {url}", flush=True)
    try:
        await stopping.wait()
    finally:
        await fake.stop()


def main(argv: list[str] | None = None) -> None:
    asyncio.run(_serve(_parser().parse_args(argv)))


if __name__ == "__main__":
    main()
