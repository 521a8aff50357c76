"""Plans are pure and seeded; their expected net is exact and computed from the plan alone."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from bot.devnet.plan import (
    INT64_MAX_TOKENS,
    MAX_STEP_BPS,
    SPREAD_BPS,
    STABLE,
    START_PRICES,
    TOKENS,
    US,
    ClearFill,
    PlannedTx,
    PriceWalk,
    TakeFill,
    count_fills,
    expected_net,
    iter_fills,
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


def _walk_path(seed: int, symbol: str, steps: int) -> tuple[PriceWalk, list[int]]:
    walk = PriceWalk(random.Random(seed))
    return walk, [walk.step(symbol) for _ in range(steps)]


def test_price_walk_is_seeded_and_deterministic() -> None:
    _, path = _walk_path(7, "AAPLs1", 2_000)
    assert path == _walk_path(7, "AAPLs1", 2_000)[1]
    assert path != _walk_path(8, "AAPLs1", 2_000)[1]
    assert make_plan(7, 50) == make_plan(7, 50)  # the walk is part of the plan's seed


@pytest.mark.parametrize("symbol", sorted(START_PRICES))
def test_price_walk_drifts_slowly_and_stays_within_its_band(symbol: str) -> None:
    walk, path = _walk_path(11, symbol, 20_000)
    start = walk.start[symbol]
    assert start == int(START_PRICES[symbol] * 10**6)
    low, high = walk.bounds(symbol)
    assert (low, high) == (start // 2, start * 3 // 2)
    previous = start
    for price in path:
        assert low <= price <= high
        # one step: at most MAX_STEP_BPS basis points (plus one micro-USDC of rounding down)
        assert abs(price - previous) * 10_000 <= previous * MAX_STEP_BPS + 10_000
        previous = price
    assert len(set(path[:100])) > 50, "it moves at (nearly) every step"
    assert max(path[:100]) - min(path[:100]) < start // 20, "slowly: < 5% in 100 steps"
    assert max(path) - min(path) > start // 20, "but it does drift away from where it started"


class _Pushing(random.Random):
    """An rng whose every step goes the same way, to drive a walk into an edge of its band."""

    def __init__(self, up: bool) -> None:
        super().__init__(0)
        self.up = up

    def randint(self, a: int, b: int) -> int:
        return b if self.up else a


@pytest.mark.parametrize("up", [True, False])
def test_price_walk_turns_back_at_the_edges_of_its_band(up: bool) -> None:
    walk = PriceWalk(_Pushing(up))
    path = [walk.step("NVDA0x") for _ in range(2_000)]  # ~280 steps of 25 bps reach an edge
    low, high = walk.bounds("NVDA0x")
    assert all(low <= p <= high for p in path)
    edge = high if up else low
    assert abs(path[-1] - edge) <= edge * MAX_STEP_BPS // 10_000 + 1


def _symbol_and_amounts(fill: TakeFill | ClearFill) -> tuple[str, int, int]:
    """(non-stable symbol, its base units, USDC base units) of a fill (bounties left out)."""
    if isinstance(fill, TakeFill):
        o = fill.order
        if o.input_symbol == STABLE:
            return o.output_symbol, fill.order_output, fill.order_input
        return o.input_symbol, fill.order_input, fill.order_output
    a = fill.alice
    if a.input_symbol == STABLE:
        return a.output_symbol, fill.bob_input, fill.alice_input
    return a.input_symbol, fill.alice_input, fill.bob_input


def test_every_fill_trades_within_the_spread_of_its_symbols_walk_price() -> None:
    walk = PriceWalk(random.Random(99))
    fills = iter_fills(random.Random(5), prices=walk)
    seen: dict[str, list[Decimal]] = {}
    for _ in range(600):
        symbol, shares, usdc = _symbol_and_amounts(next(fills))
        if shares < 10**18:
            continue  # a tiny amount: flooring the USDC to a base unit distorts its price
        price = Decimal(usdc) * 10**18 / shares  # micro-USDC per whole token
        walk_price = Decimal(walk.price(symbol))
        # + 2 micro-USDC: the traded price and then the USDC amount are rounded down
        assert abs(price - walk_price) <= walk_price * SPREAD_BPS / 10_000 + 2, symbol
        seen.setdefault(symbol, []).append(price)
    assert set(seen) == set(START_PRICES)
    for symbol, prices in seen.items():  # realistic: far from uniform in a wide range
        start = START_PRICES[symbol] * 10**6
        assert all(abs(p - start) < start / 10 for p in prices), symbol
