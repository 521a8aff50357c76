"""Exact amounts: no float, no silent rounding."""

from __future__ import annotations

from decimal import Decimal, Inexact

import pytest

from bot.core import amounts
from bot.core.model import Direction, Side, Trade, TradeKind

BIG = Decimal("123456789012345.123456789012345678")


def test_base_units_scale_exactly_far_above_int64() -> None:
    raw = 123456789012345123456789012345678
    assert amounts.from_base_units(raw, 18) == BIG
    assert amounts.to_text(amounts.from_base_units(2**256 - 1, 18)) == (
        "115792089237316195423570985008687907853269984665640564039457.584007913129639935"
    )


@pytest.mark.parametrize(("value", "text"), [("-0.20", "-0.2"), ("1E+1", "10"), ("0E-18", "0")])
def test_canonical_text(value: str, text: str) -> None:
    assert amounts.to_text(Decimal(value)) == text
    assert amounts.from_text(text) == Decimal(value)


def test_sums_that_would_round_raise_instead() -> None:
    with pytest.raises(Inexact):
        amounts.add(Decimal("1e80"), Decimal("1e-10"))


def test_price_is_quantized_half_even_to_18_places() -> None:
    assert amounts.price(Decimal(10), Decimal(3)) == Decimal("3.333333333333333333")
    with pytest.raises(ValueError, match="zero"):
        amounts.price(Decimal(1), Decimal(0))


def test_signed_shares_of_a_sell_is_exact() -> None:
    trade = Trade(
        "0x1",
        0,
        Side.TAKE,
        0,
        TradeKind.FILL,
        1,
        "0x2",
        "AAPL",
        BIG,
        Direction.SELL,
        Decimal(1),
        Decimal(1),
        "0xa",
        "0xb",
    )
    assert trade.signed_shares == Decimal("-123456789012345.123456789012345678")
    assert str(trade.signed_shares) == "-123456789012345.123456789012345678"
