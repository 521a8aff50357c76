"""Seeded, pure plans of orderbook fills and the net position they should give us.

Owners are roles (``"us"``, ``"other1"``...), tokens are symbols: a plan is independent of any
chain, and ``expected_net`` computes from the plan alone what the bot must find on chain.
Each non-stable symbol trades around its own price, a seeded random walk (``PriceWalk``) that
drifts slowly from fill to fill; every amount is an exact integer of base units.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal

from bot.core import amounts

US = "us"
OTHER_OWNERS = ("other1", "other2", "other3")
STABLE = "USDC"
NON_EQUITY = "WETH"
TOKENS: dict[str, int] = {
    "USDC": 6,
    "AAPLs1": 18,
    "TSLAs1": 18,
    "NVDA0x": 18,
    "wtMSFT": 18,
    "WETH": 18,
}
"""Symbol -> decimals of every devnet token, in deployment order."""
EQUITIES = ("AAPLs1", "TSLAs1", "NVDA0x", "wtMSFT")
_EQUITY_SUFFIXES = ("s1", "0x")
_EQUITY_PREFIXES = ("wt",)
_ONE = 10**18
INT64_MAX_TOKENS = Decimal("9.223372036854775807")
"""18-decimal base units above this many tokens overflow a signed 64-bit integer."""
START_PRICES: dict[str, Decimal] = {
    "AAPLs1": Decimal("190"),
    "TSLAs1": Decimal("250"),
    "NVDA0x": Decimal("120"),
    "wtMSFT": Decimal("420"),
    "WETH": Decimal("3000"),
}
"""USDC per whole token where each symbol's walk starts."""
MAX_STEP_BPS = 25
"""Between two fills of a symbol its price moves by at most this many basis points."""
PRICE_BAND = (Decimal("0.5"), Decimal("1.5"))
"""A walk stays within these multiples of its start price (it turns back at the edges)."""
SPREAD_BPS = 10
"""A fill trades within this many basis points of its symbol's walk price."""
_BPS = 10_000
_MICRO = 10**6


def ticker_of(symbol: str) -> str | None:
    """The ticker of a devnet equity symbol (``AAPLs1`` -> ``AAPL``), ``None`` for others."""
    for suffix in _EQUITY_SUFFIXES:
        if symbol.endswith(suffix) and len(symbol) > len(suffix):
            return symbol[: -len(suffix)]
    for prefix in _EQUITY_PREFIXES:
        if symbol.startswith(prefix) and len(symbol) > len(prefix):
            return symbol[len(prefix) :]
    return None


@dataclass(frozen=True)
class SignedContext:
    signer: bytes
    context: tuple[int, ...]
    signature: bytes


@dataclass(frozen=True)
class OrderSpec:
    """An OrderV3 by role and symbols; ``inputs[input_index]`` is the token it receives."""

    owner: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    input_index: int
    output_index: int
    vault_id: int
    nonce: bytes
    interpreter: bytes
    store: bytes
    bytecode: bytes

    @property
    def input_symbol(self) -> str:
        return self.inputs[self.input_index]

    @property
    def output_symbol(self) -> str:
        return self.outputs[self.output_index]


@dataclass(frozen=True)
class TakeFill:
    """The taker pays ``order_input`` to the order and receives ``order_output`` (base units)."""

    order: OrderSpec
    order_input: int
    order_output: int
    signed_context: tuple[SignedContext, ...]


@dataclass(frozen=True)
class ClearFill:
    """alice gives ``alice_output`` and gets ``alice_input``; bob likewise (base units)."""

    alice: OrderSpec
    bob: OrderSpec
    alice_output: int
    bob_output: int
    alice_input: int
    bob_input: int
    alice_bounty_vault_id: int
    bob_bounty_vault_id: int


@dataclass(frozen=True)
class PlannedTx:
    """One transaction: one or several takes (``takeOrders``) or clears (``clearMany``)."""

    fills: tuple[TakeFill, ...] | tuple[ClearFill, ...]

    @property
    def is_clear(self) -> bool:
        return isinstance(self.fills[0], ClearFill)


class PriceWalk:
    """Each symbol's price in micro-USDC per whole token (exact ints), a seeded random walk.

    ``step`` moves a price by a uniform whole number of basis points in
    ``[-MAX_STEP_BPS, MAX_STEP_BPS]`` (rounded down to a micro-USDC); a step that would leave
    ``PRICE_BAND`` goes the other way instead, so the price drifts slowly and never leaves it.
    The same ``rng`` state gives the same path.
    """

    def __init__(self, rng: random.Random, start: dict[str, Decimal] | None = None) -> None:
        self._rng = rng
        prices = START_PRICES if start is None else start
        self.start = {s: int(p * _MICRO) for s, p in prices.items()}
        self._price = dict(self.start)

    def bounds(self, symbol: str) -> tuple[int, int]:
        """(lowest, highest) micro-USDC price ``symbol`` may reach."""
        low, high = PRICE_BAND
        return int(self.start[symbol] * low), int(self.start[symbol] * high)

    def price(self, symbol: str) -> int:
        return self._price[symbol]

    def step(self, symbol: str) -> int:
        """Move ``symbol``'s price one step and return the new price."""
        price, (low, high) = self._price[symbol], self.bounds(symbol)
        bps = self._rng.randint(-MAX_STEP_BPS, MAX_STEP_BPS)
        moved = price * (_BPS + bps) // _BPS
        if not low <= moved <= high:
            moved = price * (_BPS - bps) // _BPS
        self._price[symbol] = moved = min(high, max(low, moved))
        return moved


def _shares_base(rng: random.Random) -> int:
    """18-decimal base units with many significant digits; a quarter above int64's 9.2 tokens."""
    band = rng.random()
    if band < 0.3:
        return rng.randrange(10**12, _ONE)
    if band < 0.75:
        return rng.randrange(_ONE, 9 * _ONE)
    return rng.randrange(92 * _ONE // 10 + 1, 500 * _ONE)


def _usdc_for(shares_base: int, symbol: str, prices: PriceWalk, rng: random.Random) -> int:
    """USDC base units for ``shares_base`` at the walk's next price, within ``SPREAD_BPS``."""
    price = prices.step(symbol)
    traded = price * (_BPS + rng.randint(-SPREAD_BPS, SPREAD_BPS)) // _BPS
    return max(1, shares_base * traded // _ONE)


def _order(rng: random.Random, owner: str, receives: str, gives: str) -> OrderSpec:
    # Decoy IOs around the real one, so IO indexes are exercised.
    def ios(real: str) -> tuple[tuple[str, ...], int]:
        symbols = [rng.choice(list(TOKENS)) for _ in range(rng.randrange(0, 3))]
        index = rng.randrange(0, len(symbols) + 1)
        symbols.insert(index, real)
        return tuple(symbols), index

    inputs, input_index = ios(receives)
    outputs, output_index = ios(gives)
    return OrderSpec(
        owner=owner,
        inputs=inputs,
        outputs=outputs,
        input_index=input_index,
        output_index=output_index,
        vault_id=rng.getrandbits(256),
        nonce=rng.randbytes(32),
        interpreter=rng.randbytes(20),
        store=rng.randbytes(20),
        bytecode=rng.randbytes(rng.randrange(0, 70)),
    )


def _pair(rng: random.Random, prices: PriceWalk, force_non_equity: bool) -> tuple[str, int, int]:
    """(non-stable symbol, its amount, USDC amount) for one fill."""
    symbol = NON_EQUITY if force_non_equity or rng.random() < 0.1 else rng.choice(EQUITIES)
    amount = _shares_base(rng)
    return symbol, amount, _usdc_for(amount, symbol, prices, rng)


def _bounty(rng: random.Random, amount: int) -> int:
    return 0 if rng.random() < 0.5 else rng.randrange(0, max(1, amount // 100))


def _take(rng: random.Random, prices: PriceWalk, owner: str, force_non_equity: bool) -> TakeFill:
    symbol, amount, usdc = _pair(rng, prices, force_non_equity)
    buys = rng.random() < 0.5  # the order receives the non-stable token
    if buys:
        order = _order(rng, owner, receives=symbol, gives=STABLE)
        order_input, order_output = amount, usdc
    else:
        order = _order(rng, owner, receives=STABLE, gives=symbol)
        order_input, order_output = usdc, amount
    contexts = tuple(
        SignedContext(
            signer=rng.randbytes(20),
            context=tuple(rng.getrandbits(256) for _ in range(rng.randrange(0, 4))),
            signature=rng.randbytes(65),
        )
        for _ in range(rng.randrange(0, 3))
    )
    return TakeFill(order, order_input, order_output, contexts)


def _clear(
    rng: random.Random, prices: PriceWalk, alice_owner: str, bob_owner: str, force: bool
) -> ClearFill:
    symbol, amount, usdc = _pair(rng, prices, force)
    alice_buys = rng.random() < 0.5
    alice_in, alice_out = (symbol, STABLE) if alice_buys else (STABLE, symbol)
    alice_in_amount, bob_in_amount = (amount, usdc) if alice_buys else (usdc, amount)
    return ClearFill(
        alice=_order(rng, alice_owner, receives=alice_in, gives=alice_out),
        bob=_order(rng, bob_owner, receives=alice_out, gives=alice_in),
        alice_output=bob_in_amount + _bounty(rng, bob_in_amount),
        bob_output=alice_in_amount + _bounty(rng, alice_in_amount),
        alice_input=alice_in_amount,
        bob_input=bob_in_amount,
        alice_bounty_vault_id=rng.getrandbits(256),
        bob_bounty_vault_id=rng.getrandbits(256),
    )


_DECK = (
    "take_us",
    "take_us",
    "take_other",
    "clear_us_alice",
    "clear_us_alice",
    "clear_us_bob",
    "clear_us_bob",
    "clear_others",
)


def iter_fills(
    rng: random.Random, prices: PriceWalk | None = None
) -> Iterator[TakeFill | ClearFill]:
    """An endless stream of fills; every 8 consecutive deck cards hold each kind and a WETH pair.

    Prices follow ``prices`` (by default a walk drawing from ``rng`` too, so a seed fixes both).
    """
    prices = prices if prices is not None else PriceWalk(rng)
    while True:
        deck = list(_DECK)
        rng.shuffle(deck)
        weth_at = rng.randrange(len(deck))
        for position, card in enumerate(deck):
            force = position == weth_at
            others = rng.sample(OTHER_OWNERS, 2)
            if card == "take_us":
                yield _take(rng, prices, US, force)
            elif card == "take_other":
                yield _take(rng, prices, others[0], force)
            elif card == "clear_us_alice":
                yield _clear(rng, prices, US, others[0], force)
            elif card == "clear_us_bob":
                yield _clear(rng, prices, others[0], US, force)
            else:
                yield _clear(rng, prices, others[0], others[1], force)


def iter_transactions(
    rng: random.Random, max_fills: int | None = None, prices: PriceWalk | None = None
) -> Iterator[PlannedTx]:
    """Group the fill stream into transactions: runs of clears (and sometimes takes) share one."""
    fills = iter_fills(rng, prices)
    emitted = 0
    pending: TakeFill | ClearFill | None = None
    while max_fills is None or emitted < max_fills:
        first = pending if pending is not None else next(fills)
        pending = None
        group: list[TakeFill | ClearFill] = [first]
        batch_max = (
            rng.choice((1, 2, 3, 4)) if isinstance(first, ClearFill) else rng.choice((1, 1, 2))
        )
        while len(group) < batch_max and (max_fills is None or emitted + len(group) < max_fills):
            candidate = next(fills)
            if type(candidate) is not type(first):
                pending = candidate
                break
            group.append(candidate)
        emitted += len(group)
        if isinstance(first, ClearFill):
            yield PlannedTx(tuple(f for f in group if isinstance(f, ClearFill)))
        else:
            yield PlannedTx(tuple(f for f in group if isinstance(f, TakeFill)))


def make_plan(seed: int, fills: int) -> list[PlannedTx]:
    """Exactly ``fills`` fills from ``random.Random(seed)``, grouped into transactions."""
    if fills < 0:
        raise ValueError("fills must be >= 0")
    return list(iter_transactions(random.Random(seed), max_fills=fills))


def _scaled(symbol: str, raw: int) -> Decimal:
    return amounts.from_base_units(raw, TOKENS[symbol])


def our_share_deltas(tx: PlannedTx, us: str = US) -> list[tuple[str, Decimal]]:
    """(ticker, signed shares) of our fills in ``tx``: BUY +, SELL -; non-trades left out."""
    deltas: list[tuple[str, Decimal]] = []

    def book(received: str, got: int, gave_symbol: str, gave: int) -> None:
        got_ticker, gave_ticker = ticker_of(received), ticker_of(gave_symbol)
        if STABLE not in (received, gave_symbol):
            return  # not a trade: no stablecoin leg
        if got_ticker is not None:
            deltas.append((got_ticker, _scaled(received, got)))
        elif gave_ticker is not None:
            deltas.append((gave_ticker, -_scaled(gave_symbol, gave)))

    for fill in tx.fills:
        if isinstance(fill, TakeFill):
            if fill.order.owner == us:
                o = fill.order
                book(o.input_symbol, fill.order_input, o.output_symbol, fill.order_output)
            continue
        a, b = fill.alice, fill.bob
        if a.owner == us:
            book(a.input_symbol, fill.alice_input, a.output_symbol, fill.alice_output)
        if b.owner == us:
            book(b.input_symbol, fill.bob_input, b.output_symbol, fill.bob_output)
    return deltas


def expected_net(plan: Iterable[PlannedTx], us: str = US) -> dict[str, Decimal]:
    """Per-ticker net shares of our fills (exact), for every ticker we traded (even if 0)."""
    net: dict[str, Decimal] = {}
    for tx in plan:
        add_expected(net, tx, us)
    return dict(sorted(net.items()))


def add_expected(net: dict[str, Decimal], tx: PlannedTx, us: str = US) -> None:
    """Add ``tx``'s fills to a running per-ticker net, in place."""
    for ticker, delta in our_share_deltas(tx, us):
        net[ticker] = amounts.add(net.get(ticker, amounts.ZERO), delta)


def count_fills(plan: Iterable[PlannedTx]) -> int:
    return sum(len(tx.fills) for tx in plan)
