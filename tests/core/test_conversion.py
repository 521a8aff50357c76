"""From a log to our trades (SPEC §3): the conversion table, pairing and failure paths."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TypedDict

import pytest

from bot.core.abi import IO, AfterClearEvent, ClearEvent, decode, order_owners
from bot.core.conversion import (
    Conversion,
    DecimalsMismatch,
    MissingTokenInfoError,
    convert,
    find_after_clear,
)
from bot.core.model import Direction, RawLog, Side, TokenInfo, TradeKind
from bot.core.tokens import DEFAULT_RULES, classify
from bot.devnet import synthetic
from bot.errors import EventProcessingError

OURS = synthetic.OWNER
THEIRS = synthetic.address_of("someone-else")
THIRD = synthetic.address_of("a-third-owner")
E18 = 10**18
BUY, SELL = Direction.BUY, Direction.SELL
ALICE, BOB, TAKE = Side.ALICE, Side.BOB, Side.TAKE

_DECIMALS = {"USDC": 6, "tBTC": 8}
SYMBOLS = [
    "USDC", "DAI", "WETH", "tBTC", "AAPLs1", "wtNVDA", "TSLA0x", "BRK.Bs1",
    "AAPLS1", "aaplS1", "wtAAPLs1", "s1", "ABCDEFGHIJKs1",
]  # fmt: skip


def tok(symbol: str) -> str:
    return synthetic.address_of(f"test-token:{symbol}")


TOKENS = {tok(s): TokenInfo(tok(s), s, _DECIMALS.get(s, 18)) for s in SYMBOLS}


def io(symbol: str, decimals: int | None = None) -> IO:
    return IO(tok(symbol), TOKENS[tok(symbol)].decimals if decimals is None else decimals, 1)


def take(
    receives: str | IO,
    gives: str | IO,
    *,
    order_in: int,
    order_out: int,
    owner: str = OURS,
    inputs: Sequence[IO] = (),
    outputs: Sequence[IO] = (),
    in_index: int = 0,
    out_index: int = 0,
) -> list[RawLog]:
    """A take of an order that received ``order_in`` of ``receives`` and gave ``order_out``."""
    order = synthetic.make_order(
        owner,
        inputs or [receives if isinstance(receives, IO) else io(receives)],
        outputs or [gives if isinstance(gives, IO) else io(gives)],
    )
    # the event's `input` is what the taker received: the order's output, and vice versa
    return [
        synthetic.take_order_log(
            order,
            input=order_out,
            output=order_in,
            input_io_index=in_index,
            output_io_index=out_index,
            at=synthetic.At(block_number=77, log_index=4),
        )
    ]


def clear(
    alice_receives: str,
    alice_gives: str,
    *,
    alice_in: int,
    alice_out: int,
    bob_in: int,
    bob_out: int,
    alice: str = OURS,
    bob: str = THEIRS,
    log_index: int = 4,
    bob_out_index: int = 0,
) -> list[RawLog]:
    """A clear where bob takes the other side: he receives what alice gives."""
    alice_order = synthetic.make_order(alice, [io(alice_receives)], [io(alice_gives)])
    bob_order = synthetic.make_order(bob, [io(alice_gives)], [io(alice_receives)])
    return list(
        synthetic.clear_logs(
            alice_order,
            bob_order,
            alice_input=alice_in,
            alice_output=alice_out,
            bob_input=bob_in,
            bob_output=bob_out,
            bob_output_io_index=bob_out_index,
            at=synthetic.At(block_number=77, log_index=log_index),
        )
    )


def two_clears_in_one_tx() -> list[RawLog]:
    first = clear("USDC", "AAPLs1", alice_in=500_125_000, alice_out=25 * E18 // 10,
                  bob_in=24 * E18 // 10, bob_out=500_200_000, log_index=0)  # fmt: skip
    second = clear("wtNVDA", "USDC", alice_in=3 * E18 // 2, alice_out=300_000_000,
                   bob_in=299_000_000, bob_out=E18, log_index=2)  # fmt: skip
    return first + second


class ClearAmounts(TypedDict):
    alice_in: int
    alice_out: int
    bob_in: int
    bob_out: int


# the AfterClear of alice's 2.5 AAPL sale: alice 2.5 -> bob 2.4 shares, bob 500.2 -> alice 500.125
AAPL_CLEAR: ClearAmounts = {
    "alice_in": 500_125_000,
    "alice_out": 25 * E18 // 10,
    "bob_in": 24 * E18 // 10,
    "bob_out": 500_200_000,
}


@dataclass(frozen=True)
class T:
    side: Side
    ticker: str
    direction: Direction
    shares: str
    usdc: str
    price: str


@dataclass(frozen=True)
class Case:
    id: str
    logs: list[RawLog]
    trades: tuple[T, ...] = ()
    skipped: tuple[tuple[Side, tuple[str, ...]], ...] = ()  # side and words of the reason
    mismatches: tuple[tuple[str, int, int], ...] = ()  # symbol, IO decimals, token decimals
    target: int = 0


CASES = [
    # --- take orders: seen from the order; the event's input/output are the taker's ---
    Case("take-sell-large-18-and-6-decimals",
         take("USDC", "AAPLs1", order_in=22_222_222_222_222, order_out=123456789012345678901234),
         (T(TAKE, "AAPL", SELL, "123456.789012345678901234", "22222222.222222",
            "180.000001619998214742"),)),
    Case("take-buy-amounts-not-swapped",
         take("wtNVDA", "USDC", order_in=3 * E18 // 2, order_out=300_000_000),
         (T(TAKE, "NVDA", BUY, "1.5", "300", "200"),)),
    Case("take-io-indexes-select-the-legs",
         take("", "", order_in=1_000_500_000, order_out=33 * E18 // 10,
              inputs=[io("WETH"), io("USDC"), io("DAI")], outputs=[io("WETH"), io("TSLA0x")],
              in_index=1, out_index=1),
         (T(TAKE, "TSLA", SELL, "3.3", "1000.5", "303.181818181818181818"),)),
    Case("take-one-wei-share",
         take("AAPLs1", "USDC", order_in=1, order_out=1),
         (T(TAKE, "AAPL", BUY, "0.000000000000000001", "0.000001", "1000000000000"),)),
    Case("take-usdc-6-decimal-exact",
         take("AAPLs1", "USDC", order_in=E18, order_out=123_456_789_012),
         (T(TAKE, "AAPL", BUY, "1", "123456.789012", "123456.789012"),)),
    Case("take-not-ours", take("USDC", "AAPLs1", order_in=1, order_out=E18, owner=THEIRS)),
    # --- clears: amounts from the AfterClear, per side ---
    Case("clear-as-alice", clear("USDC", "AAPLs1", **AAPL_CLEAR),
         (T(ALICE, "AAPL", SELL, "2.5", "500.125", "200.05"),)),
    Case("clear-as-bob", clear("USDC", "AAPLs1", alice=THEIRS, bob=OURS, **AAPL_CLEAR),
         (T(BOB, "AAPL", BUY, "2.4", "500.2", "208.416666666666666667"),)),
    Case("clear-both-ours-one-trade-each", clear("USDC", "AAPLs1", bob=OURS, **AAPL_CLEAR),
         (T(ALICE, "AAPL", SELL, "2.5", "500.125", "200.05"),
          T(BOB, "AAPL", BUY, "2.4", "500.2", "208.416666666666666667"))),
    Case("clear-not-ours", clear("USDC", "AAPLs1", alice=THEIRS, bob=THIRD, **AAPL_CLEAR)),
    Case("clear-not-ours-without-after-clear",
         clear("USDC", "AAPLs1", alice=THEIRS, bob=THIRD, **AAPL_CLEAR)[:1]),
    Case("several-clears-in-one-tx-first", two_clears_in_one_tx(),
         (T(ALICE, "AAPL", SELL, "2.5", "500.125", "200.05"),), target=0),
    Case("several-clears-in-one-tx-second", two_clears_in_one_tx(),
         (T(ALICE, "NVDA", BUY, "1.5", "300", "200"),), target=2),
    Case("several-clears-listed-out-of-order", list(reversed(two_clears_in_one_tx())),
         (T(ALICE, "NVDA", BUY, "1.5", "300", "200"),), target=1),
    # --- pairs that are not trades ---
    Case("equity-and-weth", take("WETH", "AAPLs1", order_in=E18, order_out=E18),
         skipped=((TAKE, ("'WETH'", "'AAPLs1'")),)),
    Case("two-equities", clear("wtNVDA", "AAPLs1", **AAPL_CLEAR),
         skipped=((ALICE, ("'wtNVDA'", "'AAPLs1'")),)),
    Case("two-stablecoins", take("USDC", "USDC", order_in=1, order_out=1),
         skipped=((TAKE, ("'USDC' (stablecoin)",)),)),
    Case("unknown-symbol-dai", take("DAI", "AAPLs1", order_in=E18, order_out=E18),
         skipped=((TAKE, ("'DAI'", "no equity marker")),)),
    # --- marker rules (case, exactly one marker, ticker pattern, prefix vs suffix) ---
    Case("marker-upper-case-suffix", take("USDC", "AAPLS1", order_in=1, order_out=E18),
         skipped=((TAKE, ("'AAPLS1'", "no equity marker")),)),
    Case("marker-lower-case-ticker", take("USDC", "aaplS1", order_in=1, order_out=E18),
         skipped=((TAKE, ("'aaplS1'",)),)),
    Case("marker-two-markers", take("USDC", "wtAAPLs1", order_in=1, order_out=E18),
         skipped=((TAKE, ("'wtAAPLs1'", "two equity markers")),)),
    Case("marker-tbtc-is-not-an-equity", take("USDC", "tBTC", order_in=1, order_out=10**8),
         skipped=((TAKE, ("'tBTC'",)),)),
    Case("marker-empty-ticker", take("USDC", "s1", order_in=1, order_out=E18),
         skipped=((TAKE, ("'s1'", "ticker ''")),)),
    Case("marker-ticker-too-long", take("USDC", "ABCDEFGHIJKs1", order_in=1, order_out=E18),
         skipped=((TAKE, ("'ABCDEFGHIJKs1'", "does not match")),)),
    Case("marker-prefix", take("wtNVDA", "USDC", order_in=E18, order_out=1),
         (T(TAKE, "NVDA", BUY, "1", "0.000001", "0.000001"),)),
    Case("marker-suffix-with-dot", take("BRK.Bs1", "USDC", order_in=2 * E18, order_out=10**9),
         (T(TAKE, "BRK.B", BUY, "2", "1000", "500"),)),
    # --- zero amounts ---
    Case("zero-shares-skipped", take("USDC", "AAPLs1", order_in=5_000_000, order_out=0),
         skipped=((TAKE, ("zero shares", "AAPLs1", "5 USDC")),)),
    Case("zero-usdc-still-a-trade", take("USDC", "AAPLs1", order_in=0, order_out=E18),
         (T(TAKE, "AAPL", SELL, "1", "0", "0"),)),
    # --- decimals: the IO's are authoritative; a mismatch is flagged, the trade counts ---
    Case("decimals-mismatch-flagged-but-counted",
         take(io("USDC"), io("AAPLs1", decimals=6), order_in=400_000_000, order_out=2_500_000),
         (T(TAKE, "AAPL", SELL, "2.5", "400", "160"),), mismatches=(("AAPLs1", 6, 18),)),
    Case("decimals-mismatch-on-a-skipped-fill",
         take(io("WETH", decimals=8), io("AAPLs1"), order_in=1, order_out=E18),
         skipped=((TAKE, ("'WETH'",)),), mismatches=(("WETH", 8, 18),)),
]  # fmt: skip


def run(logs: Sequence[RawLog], target: int, owner: str = OURS, inclusion: int = 3) -> Conversion:
    """What the drain does: owners first, full decode, pairing, conversion."""
    raw = logs[target]
    event = decode(raw)
    after_clear = None
    if isinstance(event, ClearEvent):
        found = find_after_clear(raw, logs)
        if found is not None:
            decoded = decode(found)
            assert isinstance(decoded, AfterClearEvent)
            after_clear = decoded
    return convert(
        raw,
        event,
        owner=owner,
        after_clear=after_clear,
        tokens=TOKENS,
        rules=DEFAULT_RULES,
        inclusion=inclusion,
    )


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_conversion_table(case: Case) -> None:
    raw = case.logs[case.target]
    result = run(case.logs, case.target)

    assert [
        (t.side, t.ticker, t.direction, t.shares, t.usdc_amount, t.price_usdc)
        for t in result.trades
    ] == [
        (t.side, t.ticker, t.direction, Decimal(t.shares), Decimal(t.usdc), Decimal(t.price))
        for t in case.trades
    ]
    for trade in result.trades:
        assert (trade.tx_hash, trade.log_index, trade.inclusion, trade.kind) == (
            raw.tx_hash,
            raw.log_index,
            3,
            TradeKind.FILL,
        )
        assert (trade.block_number, trade.block_hash) == (raw.block_number, raw.block_hash)
        assert classify(TOKENS[trade.equity_token].symbol, DEFAULT_RULES).ticker == trade.ticker
        assert TOKENS[trade.stable_token].symbol == "USDC"
        assert trade.shares > 0

    assert [s.side for s in result.skipped] == [side for side, _ in case.skipped]
    for skipped, (_, words) in zip(result.skipped, case.skipped, strict=True):
        assert (skipped.tx_hash, skipped.log_index) == (raw.tx_hash, raw.log_index)
        for word in words:
            assert word in skipped.reason

    assert [
        (m.symbol, m.io_decimals, m.token_decimals) for m in result.decimals_mismatches
    ] == list(case.mismatches)
    for mismatch in result.decimals_mismatches:
        assert TOKENS[mismatch.token].symbol == mismatch.symbol
        assert (mismatch.tx_hash, mismatch.log_index) == (raw.tx_hash, raw.log_index)

    # the fast path agrees with the full decode on whether the event is ours
    assert (OURS in order_owners(raw)) == bool(case.trades or case.skipped)


def test_large_amounts_are_exact_decimals() -> None:
    (trade,) = run(CASES[0].logs, 0).trades
    assert trade.shares == Decimal("123456.789012345678901234")
    assert trade.shares.as_tuple().exponent == -18  # not rounded through a float or int64
    assert trade.usdc_amount == Decimal("22222222.222222")
    assert trade.signed_shares == Decimal("-123456.789012345678901234")


@pytest.mark.parametrize("spelling", [OURS.lower(), "0x" + OURS[2:].upper(), OURS])
def test_owner_matches_whatever_its_case(spelling: str) -> None:
    (trade,) = run(clear("USDC", "AAPLs1", **AAPL_CLEAR), 0, owner=spelling).trades
    assert (trade.side, trade.direction, trade.shares) == (ALICE, SELL, Decimal("2.5"))


def test_after_clear_alone_converts_to_nothing() -> None:
    logs = clear("USDC", "AAPLs1", **AAPL_CLEAR)
    assert run(logs, 1) == Conversion()


# --- failures: loud, never a silent drop ---------------------------------------------------------


def test_our_clear_without_after_clear_raises() -> None:
    logs = clear("USDC", "AAPLs1", **AAPL_CLEAR)
    with pytest.raises(EventProcessingError, match="AfterClear") as caught:
        run(logs[:1], 0)
    assert logs[0].tx_hash in str(caught.value)


def test_clear_followed_by_another_clear_does_not_steal_its_amounts() -> None:
    logs = two_clears_in_one_tx()
    del logs[1]  # the first clear's AfterClear is missing
    assert find_after_clear(logs[0], logs) is None
    with pytest.raises(EventProcessingError, match="AfterClear"):
        run(logs, 0)
    (trade,) = run(logs, 1).trades  # the second still pairs with its own
    assert (trade.ticker, trade.shares) == ("NVDA", Decimal("1.5"))


@pytest.mark.parametrize(
    ("logs", "message"),
    [
        (take("USDC", "AAPLs1", order_in=1, order_out=1, in_index=1), "input IO index 1"),
        (take("USDC", "AAPLs1", order_in=1, order_out=1, out_index=2**255), "output IO index"),
        (
            clear("USDC", "AAPLs1", alice=THEIRS, bob=OURS, bob_out_index=3, **AAPL_CLEAR),
            "output IO index 3 is out of range",
        ),
    ],
    ids=["take-input", "take-output-huge", "clear-bob-output"],
)
def test_io_index_out_of_range_raises(logs: list[RawLog], message: str) -> None:
    with pytest.raises(EventProcessingError, match=message):
        run(logs, 0)


def test_io_index_out_of_range_of_someone_else_is_ignored() -> None:
    logs = take("USDC", "AAPLs1", order_in=1, order_out=1, in_index=9, owner=THEIRS)
    assert run(logs, 0) == Conversion()


def test_missing_token_raises_naming_the_address() -> None:
    stranger = synthetic.address_of("token-nobody-fetched")
    logs = take(IO(stranger, 18, 1), io("USDC"), order_in=1, order_out=1)
    with pytest.raises(MissingTokenInfoError) as caught:
        run(logs, 0)
    assert isinstance(caught.value, KeyError)
    assert isinstance(caught.value, EventProcessingError)
    assert caught.value.address == stranger
    assert stranger in str(caught.value)


def test_decimals_mismatch_record() -> None:
    logs = take(io("USDC"), io("AAPLs1", decimals=6), order_in=1, order_out=1)
    assert run(logs, 0).decimals_mismatches == (
        DecimalsMismatch(logs[0].tx_hash, 4, TAKE, tok("AAPLs1"), "AAPLs1", 6, 18),
    )


# --- find_after_clear ----------------------------------------------------------------------------


def test_find_after_clear_ignores_other_blocks_addresses_and_removed_logs() -> None:
    clear_log, after = clear("USDC", "AAPLs1", **AAPL_CLEAR)
    assert find_after_clear(clear_log, [clear_log, after]) == after
    assert find_after_clear(clear_log, [after, clear_log]) == after
    decoys = [
        dataclasses.replace(after, block_hash="0x" + "99" * 32),  # same tx on another fork
        dataclasses.replace(after, address=synthetic.address_of("another-orderbook")),
        dataclasses.replace(after, removed=True),
        dataclasses.replace(after, tx_hash="0x" + "98" * 32),
        dataclasses.replace(after, log_index=clear_log.log_index - 1),
        dataclasses.replace(after, log_index=clear_log.log_index),
        dataclasses.replace(after, topic0="0x" + "ab" * 32, log_index=clear_log.log_index + 1),
    ]
    assert find_after_clear(clear_log, decoys) is None
    farther = dataclasses.replace(after, log_index=after.log_index + 5)
    assert find_after_clear(clear_log, [farther, *decoys, after]) == after
    # a foreign log between them (another contract, e.g. from a receipt) is not in the way
    assert find_after_clear(clear_log, [*decoys, farther]) == farther
    # case of hex strings does not matter
    upper = dataclasses.replace(after, tx_hash=after.tx_hash.upper().replace("0X", "0x"))
    assert find_after_clear(clear_log, [upper]) == upper


# --- the synthetic stream agrees with its own oracle -------------------------------------------


def test_synthetic_stream_converts_to_its_expected_fills() -> None:
    txs = list(synthetic.synthetic_transactions(1500, seed=7))
    assert sum(len(tx.logs) for tx in txs) == 1500
    assert txs == list(synthetic.synthetic_transactions(1500, seed=7))  # deterministic
    ours = [tx for tx in txs if tx.expected]
    assert 0.05 * len(txs) < len(ours) < 0.2 * len(txs)
    kinds = {(f.side, f.direction) for tx in ours for f in tx.expected}
    assert kinds == {(s, d) for s in Side for d in Direction}
    keys = [(log.block_number, log.log_index) for tx in txs for log in tx.logs]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)

    for tx in txs:
        fills = []
        for log in tx.logs:
            if synthetic.OWNER not in order_owners(log):
                continue
            event = decode(log)
            after = None
            if isinstance(event, ClearEvent):
                found = find_after_clear(log, tx.logs)
                assert found is not None
                decoded = decode(found)
                assert isinstance(decoded, AfterClearEvent)
                after = decoded
            result = convert(
                log,
                event,
                owner=synthetic.OWNER,
                after_clear=after,
                tokens=synthetic.SYNTHETIC_TOKENS,
                rules=DEFAULT_RULES,
                inclusion=0,
            )
            assert result.skipped == () and result.decimals_mismatches == ()
            fills += [
                synthetic.ExpectedFill(t.side, t.ticker, t.direction, t.shares, t.usdc_amount)
                for t in result.trades
            ]
        assert tuple(fills) == tx.expected
