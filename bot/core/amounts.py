"""Exact amounts: integers in base units and ``Decimal`` values, never float.

18-decimal base units overflow SQLite's 64-bit INTEGER above ~9.2 tokens, so amounts are stored as
canonical decimal TEXT and added here with an 80-digit context that traps ``Inexact``: a sum that
cannot be represented exactly raises instead of rounding silently.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal, Inexact, InvalidOperation

EXACT = Context(prec=80, traps=[Inexact, InvalidOperation])
"""Context for sums and differences of amounts: any rounding is an error."""

PRICE = Context(prec=80, traps=[InvalidOperation])
"""Context for quotients (prices): rounding is expected, then quantized to PRICE_QUANTUM."""

PRICE_QUANTUM = Decimal("1e-18")
ZERO = Decimal(0)


def from_base_units(raw: int, decimals: int) -> Decimal:
    """Scale a raw token integer by its decimals, exactly (``raw / 10**decimals``)."""
    if raw < 0:
        raise ValueError(f"token amounts are unsigned, got {raw}")
    if not 0 <= decimals <= 255:
        raise ValueError(f"decimals must be 0..255, got {decimals}")
    return EXACT.scaleb(Decimal(raw), -decimals)


def add(a: Decimal, b: Decimal) -> Decimal:
    return EXACT.add(a, b)


def sub(a: Decimal, b: Decimal) -> Decimal:
    return EXACT.subtract(a, b)


def total(values: list[Decimal] | tuple[Decimal, ...]) -> Decimal:
    acc = ZERO
    for value in values:
        acc = EXACT.add(acc, value)
    return acc


def price(numerator: Decimal, denominator: Decimal) -> Decimal:
    """``numerator / denominator`` rounded half-even to 18 decimal places (deterministic)."""
    if denominator == 0:
        raise ValueError("price of a zero quantity")
    quotient = PRICE.divide(numerator, denominator)
    return normalize(quotient.quantize(PRICE_QUANTUM, rounding=ROUND_HALF_EVEN, context=PRICE))


def normalize(value: Decimal) -> Decimal:
    """Strip trailing zeros without switching to exponent notation."""
    if value == 0:
        return ZERO
    stripped = value.normalize(EXACT)
    _sign, _digits, exponent = stripped.as_tuple()
    if isinstance(exponent, int) and exponent > 0:
        stripped = stripped.quantize(Decimal(1), context=EXACT)
    return stripped


def to_text(value: Decimal) -> str:
    """Canonical plain-notation text: ``"-0.2"``, ``"1"``, ``"0"`` (never ``"1E+1"``)."""
    return format(normalize(value), "f")


def from_text(text: str) -> Decimal:
    value = Decimal(text)
    if not value.is_finite():
        raise ValueError(f"not a finite decimal: {text!r}")
    return value
