"""Plans are pure and seeded; their expected net is exact and computed from the plan alone."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bot.devnet.plan import (
    INT64_MAX_TOKENS,
    TOKENS,
    US,
    ClearFill,
    PlannedTx,
    TakeFill,
    count_fills,
    expected_net,
    make_plan,
    ticker_of,
)
from devnet.helpers import clear, take

E18 = 10**18


@pytest.mark.parametrize(
    ("symbol", "ticker"),
    [("AAPLs1", "AAPL"), ("TSLAs1", "TSLA"), ("NVDA0x", "NVDA"), ("wtMSFT", "MSFT"),
     ("USDC", None), ("WETH", None), ("s1", None), ("wt", None)],
)  # fmt: skip
def test_ticker_of(symbol: str, ticker: str | None) -> None:
    assert ticker_of(symbol) == ticker


def test_plan_is_deterministic_and_has_the_exact_fill_count() -> None:
    assert make_plan(3, 40) == make_plan(3, 40)
    assert make_plan(3, 40) != make_plan(4, 40)
    for fills in (0, 1, 2, 7, 100):
        assert count_fills(make_plan(11, fills)) == fills
    with pytest.raises(ValueError, match="fills"):
        make_plan(1, -1)


def test_plan_covers_every_kind_of_fill() -> None:
    plan = make_plan(5, 60)
    fills = [f for tx in plan for f in tx.fills]
    takes = [f for f in fills if isinstance(f, TakeFill)]
    clears = [f for f in fills if isinstance(f, ClearFill)]
    assert any(f.order.owner == US for f in takes)
    assert any(f.order.owner != US for f in takes)
    assert any(f.alice.owner == US for f in clears)
    assert any(f.bob.owner == US for f in clears)
    assert any(US not in (f.alice.owner, f.bob.owner) for f in clears)
    assert all(f.alice.owner != f.bob.owner for f in clears)
    assert any(tx.is_clear and len(tx.fills) >= 2 for tx in plan)
    # our take orders both buy and sell equity
    assert {ticker_of(f.order.input_symbol) is not None for f in takes if f.order.owner == US} == {
        True,
        False,
    }
    pairs = {frozenset((f.order.input_symbol, f.order.output_symbol)) for f in takes}
    pairs |= {frozenset((f.alice.input_symbol, f.alice.output_symbol)) for f in clears}
    assert frozenset(("WETH", "USDC")) in pairs
    assert {s for p in pairs for s in p} == set(TOKENS)
    equity_amounts = [
        Decimal(f.order_input if ticker_of(f.order.input_symbol) else f.order_output) / E18
        for f in takes
        if "WETH" not in (f.order.input_symbol, f.order.output_symbol)
    ]
    assert any(a > INT64_MAX_TOKENS for a in equity_amounts)
    assert any(a < 1 for a in equity_amounts)
    assert any(len(a.as_tuple().digits) >= 17 for a in equity_amounts)
    assert any(f.order.input_index > 0 or f.order.output_index > 0 for f in takes)


def test_expected_net_from_a_hand_built_plan() -> None:
    plan = [
        take(US, "AAPLs1", "USDC", 1_500_000_000_000_000_001, 300_000_000),  # BUY 1.5…01 AAPL
        take(US, "USDC", "wtMSFT", 10**6, 12 * E18 + 5),  # SELL 12.000…005 MSFT
        take("other1", "AAPLs1", "USDC", 7 * E18, 10**6),  # not ours
        take(US, "WETH", "USDC", 3 * E18, 10**9),  # ours but not a trade
        PlannedTx(
            (
                # we are bob: alice receives USDC and gives NVDA0x, so we receive 0.3 NVDA
                clear(
                    "other1", US, "USDC", "NVDA0x", (3 * E18 // 10 + 9, 10**6, 10**6, 3 * E18 // 10)
                ),
                # we are alice selling 2 AAPL (alice_output, bounty included)
                clear(US, "other2", "USDC", "AAPLs1", (2 * E18, 5 * 10**6, 4 * 10**6, 2 * E18 - 1)),
                clear("other1", "other2", "USDC", "TSLAs1", (E18, 10**6, 10**6, E18)),  # not ours
            )
        ),
    ]
    assert expected_net(plan) == {
        "AAPL": Decimal("-0.499999999999999999"),
        "MSFT": Decimal("-12.000000000000000005"),
        "NVDA": Decimal("0.3"),
    }
    assert expected_net(plan[2:3]) == {}
    assert expected_net(plan, us="other1") == {
        "AAPL": Decimal(7),
        "NVDA": Decimal("-0.300000000000000009"),
        "TSLA": Decimal(-1),
    }
