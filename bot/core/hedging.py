"""Hedge sizing (SPEC §4, §5): how many shares the next execution of a ticker hedges. Pure.

A hedge offsets the ticker's net unhedged position: net long on chain → broker SELL, net short →
broker BUY. Whole shares by default; a fractional quantity (truncated to the broker's 9 decimals)
only where the broker can take one for this order — the asset is fractionable and the order is
not a fractional short sale, which Alpaca refuses. Where it cannot, the threshold is at least one
share and the quantity whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_FLOOR, Decimal

from bot.core.amounts import EXACT, ZERO, normalize
from bot.core.model import Direction

FRACTION_QUANTUM = Decimal("1e-9")
ONE = Decimal(1)


@dataclass(frozen=True, slots=True)
class Hedge:
    direction: Direction  # the broker side
    shares: Decimal


def check_threshold(threshold: Decimal | int, *, fractional: bool) -> Decimal:
    """The configured threshold as a Decimal; ``ValueError`` unless it is valid (SPEC §4)."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, Decimal)):
        raise ValueError(f"threshold must be an int or Decimal, got {threshold!r}")
    value = Decimal(threshold)
    if not value.is_finite() or value <= 0:
        raise ValueError(f"threshold must be > 0, got {threshold!r}")
    if not fractional and (value < 1 or value != value.to_integral_value()):
        raise ValueError(
            f"threshold {threshold} needs fractional hedges; without them it is a whole number >= 1"
        )
    return value


def hedge_for(
    unhedged: Decimal,
    threshold: Decimal,
    *,
    fractional: bool = False,
    broker_long: Decimal = ZERO,
) -> Hedge | None:
    """The execution ``unhedged`` calls for, or ``None`` below the effective threshold.

    ``fractional``: the asset may be traded in fractions (config and broker agree);
    ``broker_long``: the long position the broker holds for the ticker (a fractional SELL above
    it would be a fractional short sale, so that one stays whole).
    """
    direction = Direction.BUY if unhedged < 0 else Direction.SELL
    magnitude = EXACT.abs(unhedged)
    if fractional:
        size = magnitude.quantize(FRACTION_QUANTUM, rounding=ROUND_DOWN, context=EXACT)
        short_sale = direction is Direction.SELL and size > broker_long
        if not short_sale:
            if magnitude < threshold or size <= 0:
                return None
            return Hedge(direction, normalize(size))
    if magnitude < max(threshold, ONE):
        return None
    whole = magnitude.to_integral_value(rounding=ROUND_FLOOR, context=EXACT)
    return Hedge(direction, whole)
