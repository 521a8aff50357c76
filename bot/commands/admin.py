"""``bot retry``, ``bot skip``, ``bot unpark``: mark rows in one short transaction, with no lock
and no network call; the running consumer acts on them."""

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


def register(command: Callable[[str, Handler, str], argparse.ArgumentParser]) -> None:
    retry = command("retry", _retry, "queue a failed event again (all failed ones by default)")
    retry.add_argument("event", type=int, nargs="?", default=None, help="event id")
    skip = command("skip", _skip, "give up on a failed event, with a reason")
    skip.add_argument("event", type=int, help="event id")
    skip.add_argument("--reason", required=True, help="why it is skipped (kept with the row)")
    unpark = command("unpark", _unpark, "allow new orders for a parked ticker")
    unpark.add_argument("ticker")
