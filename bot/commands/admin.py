"""``bot retry``, ``skip``, ``unpark``, ``baseline``, ``accept-drift``: mark rows in one short
transaction, with no lock and no network call; the running consumer acts on them."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from bot.config import load
from bot.store import admin

Handler = Callable[[argparse.Namespace], int]


def _retry(args: argparse.Namespace) -> int:
    print(admin.retry(load(args.config).database_path, args.event).message)
    return 0


def _skip(args: argparse.Namespace) -> int:
    print(admin.skip(load(args.config).database_path, args.event, args.reason).message)
    return 0


def _unpark(args: argparse.Namespace) -> int:
    print(admin.unpark(load(args.config).database_path, args.ticker).message)
    return 0


def _baseline(args: argparse.Namespace) -> int:
    path = load(args.config).database_path
    print(admin.baseline(path, args.ticker, as_hedged=args.as_hedged).message)
    return 0


def _accept_drift(args: argparse.Namespace) -> int:
    print(admin.accept_drift(load(args.config).database_path, args.ticker).message)
    return 0


def register(command: Callable[[str, Handler, str], argparse.ArgumentParser]) -> None:
    retry = command("retry", _retry, "queue a failed event again (all failed ones by default)")
    retry.add_argument("event", type=int, nargs="?", default=None, help="event id")
    skip = command("skip", _skip, "give up on a failed event, with a reason")
    skip.add_argument("event", type=int, help="event id")
    skip.add_argument("--reason", required=True, help="why it is skipped (kept with the row)")
    unpark = command("unpark", _unpark, "allow new orders for a parked ticker")
    unpark.add_argument("ticker")
    base = command("baseline", _baseline, "say what the broker's position in a ticker is (SPEC §5)")
    base.add_argument("ticker")
    which = base.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--as-hedged",
        action="store_true",
        help="it is this bot's earlier hedge: booked as hedged, no order placed",
    )
    which.add_argument(
        "--as-outside",
        action="store_true",
        help="it is unrelated to this bot: it becomes the ticker's baseline for drift",
    )
    drift = command("accept-drift", _accept_drift, "fold a ticker's drift into its baseline")
    drift.add_argument("ticker")
