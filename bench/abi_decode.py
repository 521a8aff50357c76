"""Decoding cost per event: the slicing decoder (abi.decode) against eth_abi (decode_reference).

    .venv/bin/python bench/abi_decode.py [--seed 1] [--number 2000] [--repeat 7]

µs per call for one synthetic TakeOrderV2, ClearV2 and AfterClear (two inputs and two outputs
per order, as bot.devnet.synthetic builds them): the best and the median of ``--repeat`` rounds
of ``--number`` calls each, and the reference/fast ratio of the medians.
"""

from __future__ import annotations

import argparse
import statistics
import timeit
from collections.abc import Callable

from bot.core.abi import (
    TOPIC_AFTER_CLEAR,
    TOPIC_CLEAR_V2,
    TOPIC_TAKE_ORDER_V2,
    OrderbookEvent,
    decode,
    decode_reference,
)
from bot.core.model import RawLog
from bot.devnet.synthetic import synthetic_logs

NAMES = {
    TOPIC_TAKE_ORDER_V2: "TakeOrderV2",
    TOPIC_CLEAR_V2: "ClearV2",
    TOPIC_AFTER_CLEAR: "AfterClear",
}


def per_call_us(
    read: Callable[[RawLog], OrderbookEvent], raw: RawLog, number: int, repeat: int
) -> tuple[float, float]:
    rounds = timeit.repeat(lambda: read(raw), number=number, repeat=repeat)
    return min(rounds) / number * 1e6, statistics.median(rounds) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--number", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    samples: dict[str, RawLog] = {}
    for raw in synthetic_logs(200, seed=args.seed):
        samples.setdefault(raw.topic0, raw)
    print(f"{'event':<12} {'bytes':>5} {'fast µs':>16} {'eth_abi µs':>16} {'ratio':>6}")
    for topic0, name in NAMES.items():
        raw = samples[topic0]
        assert decode(raw) == decode_reference(raw)
        fast = per_call_us(decode, raw, args.number, args.repeat)
        reference = per_call_us(decode_reference, raw, args.number, args.repeat)
        print(
            f"{name:<12} {len(raw.data):>5} {fast[1]:>7.1f} (min {fast[0]:>4.1f})"
            f" {reference[1]:>7.1f} (min {reference[0]:>5.1f}) {reference[1] / fast[1]:>5.1f}×"
        )


if __name__ == "__main__":
    main()
