"""From a decoded orderbook event to our trades (SPEC §3), pure.

Everything is seen from **our order's** side: its input amount is what it received, its output
amount what it gave. Giving the equity is an on-chain ``SELL``, receiving it a ``BUY``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bot.core import amounts
from bot.core.abi import (
    IO,
    TOPIC_AFTER_CLEAR,
    TOPIC_CLEAR_V2,
    AfterClearEvent,
    ClearEvent,
    Order,
    TakeOrderEvent,
)
from bot.core.model import Direction, RawLog, Side, SkippedFill, TokenInfo, Trade, TradeKind
from bot.core.tokens import RoleKind, SymbolRules, TokenRole, classify
from bot.errors import EventProcessingError

# re-exported: the drain imports it from here
from bot.errors import MissingTokenInfoError as MissingTokenInfoError  # noqa: PLC0414


@dataclass(frozen=True, slots=True)
class DecimalsMismatch:
    """The IO's ``decimals`` (authoritative, used) differs from the token's ``decimals()``."""

    tx_hash: str
    log_index: int
    side: Side
    token: str
    symbol: str
    io_decimals: int
    token_decimals: int


@dataclass(frozen=True, slots=True)
class Conversion:
    """What one event means for us: trades, skipped fills and decimals mismatches to flag."""

    trades: tuple[Trade, ...] = ()
    skipped: tuple[SkippedFill, ...] = ()
    decimals_mismatches: tuple[DecimalsMismatch, ...] = ()


EMPTY = Conversion()


def _same(a: str, b: str) -> bool:
    return a.lower() == b.lower()


def find_after_clear(clear: RawLog, same_tx_logs: Sequence[RawLog]) -> RawLog | None:
    """The ``AfterClear`` of ``clear``: same transaction, block and orderbook, nearest greater
    ``log_index``.

    ``clear`` emits ``ClearV2`` and then its ``AfterClear`` in one call, with no orderbook log in
    between, so when another ``ClearV2`` of the orderbook comes first, this clear's ``AfterClear``
    is missing and ``None`` is returned rather than stealing the next clear's amounts. Logs of
    another block (the same transaction on another fork may have other amounts), of another
    address (e.g. from a receipt) and removed logs are ignored.
    """
    candidates = sorted(
        (
            log
            for log in same_tx_logs
            if log.log_index > clear.log_index
            and not log.removed
            and _same(log.tx_hash, clear.tx_hash)
            and _same(log.block_hash, clear.block_hash)
            and _same(log.address, clear.address)
            and log.topic0.lower() in (TOPIC_AFTER_CLEAR, TOPIC_CLEAR_V2)
        ),
        key=lambda log: log.log_index,
    )
    if candidates and candidates[0].topic0.lower() == TOPIC_AFTER_CLEAR:
        return candidates[0]
    return None


@dataclass(frozen=True, slots=True)
class _Fill:
    """One of our orders in an event: which IOs it used and the raw amounts it moved."""

    side: Side
    order: Order
    input_io_index: int
    output_io_index: int
    input_amount: int  # what our order received
    output_amount: int  # what our order gave


def convert(
    raw: RawLog,
    event: TakeOrderEvent | ClearEvent | AfterClearEvent,
    *,
    owner: str,
    after_clear: AfterClearEvent | None,
    tokens: Mapping[str, TokenInfo],
    rules: SymbolRules,
    inclusion: int,
) -> Conversion:
    """Convert one decoded event into our trades (SPEC §3).

    ``owner`` is ``orderbook.order_owner``; ``after_clear`` is the decoded :func:`find_after_clear`
    of a ``ClearV2`` (ignored otherwise); ``tokens`` maps checksummed token addresses to their
    cached ``TokenInfo``; ``inclusion`` is the queue row's revival counter.

    Raises :class:`EventProcessingError` for a ``ClearV2`` of ours without its ``AfterClear`` or an
    IO index out of range, and :class:`MissingTokenInfoError` for a token absent from ``tokens``.
    An ``AfterClear`` alone, or an event with none of our orders, converts to nothing.
    """
    fills = _our_fills(raw, event, owner=owner, after_clear=after_clear)
    trades: list[Trade] = []
    skipped: list[SkippedFill] = []
    mismatches: list[DecimalsMismatch] = []
    for fill in fills:
        result = _convert_fill(raw, fill, tokens=tokens, rules=rules, inclusion=inclusion)
        mismatches.extend(result.decimals_mismatches)
        trades.extend(result.trades)
        skipped.extend(result.skipped)
    if not fills:
        return EMPTY
    return Conversion(tuple(trades), tuple(skipped), tuple(mismatches))


def _our_fills(
    raw: RawLog,
    event: TakeOrderEvent | ClearEvent | AfterClearEvent,
    *,
    owner: str,
    after_clear: AfterClearEvent | None,
) -> list[_Fill]:
    if isinstance(event, TakeOrderEvent):
        if not _same(event.order.owner, owner):
            return []
        # On chain `input` is what the taker received = what the order gave, and vice versa.
        return [
            _Fill(
                Side.TAKE,
                event.order,
                event.input_io_index,
                event.output_io_index,
                input_amount=event.output,
                output_amount=event.input,
            )
        ]
    if isinstance(event, ClearEvent):
        alice_ours = _same(event.alice.owner, owner)
        bob_ours = _same(event.bob.owner, owner)
        if not (alice_ours or bob_ours):
            return []
        if after_clear is None:
            raise EventProcessingError(
                f"ClearV2 tx={raw.tx_hash} log_index={raw.log_index} involves our order but its "
                "AfterClear (same transaction, next log) is missing: no amounts to book"
            )
        fills = []
        if alice_ours:
            fills.append(
                _Fill(
                    Side.ALICE,
                    event.alice,
                    event.alice_input_io_index,
                    event.alice_output_io_index,
                    input_amount=after_clear.alice_input,
                    output_amount=after_clear.alice_output,
                )
            )
        if bob_ours:  # cannot happen together with alice on chain; one trade each if it does
            fills.append(
                _Fill(
                    Side.BOB,
                    event.bob,
                    event.bob_input_io_index,
                    event.bob_output_io_index,
                    input_amount=after_clear.bob_input,
                    output_amount=after_clear.bob_output,
                )
            )
        return fills
    return []  # an AfterClear alone is the companion of a ClearV2, not a fill


def _io_at(raw: RawLog, fill: _Fill, ios: tuple[IO, ...], index: int, what: str) -> IO:
    if not 0 <= index < len(ios):
        raise EventProcessingError(
            f"tx={raw.tx_hash} log_index={raw.log_index} side={fill.side}: {what} IO index "
            f"{index} is out of range ({len(ios)} {what}s)"
        )
    return ios[index]


def _token_info(tokens: Mapping[str, TokenInfo], address: str) -> TokenInfo:
    info = tokens.get(address)
    if info is None:
        raise MissingTokenInfoError(address)
    return info


def _convert_fill(
    raw: RawLog,
    fill: _Fill,
    *,
    tokens: Mapping[str, TokenInfo],
    rules: SymbolRules,
    inclusion: int,
) -> Conversion:
    received_io = _io_at(raw, fill, fill.order.valid_inputs, fill.input_io_index, "input")
    given_io = _io_at(raw, fill, fill.order.valid_outputs, fill.output_io_index, "output")
    received_info = _token_info(tokens, received_io.token)
    given_info = _token_info(tokens, given_io.token)
    mismatches = tuple(
        DecimalsMismatch(
            raw.tx_hash,
            raw.log_index,
            fill.side,
            io.token,
            info.symbol,
            io_decimals=io.decimals,
            token_decimals=info.decimals,
        )
        for io, info in ((received_io, received_info), (given_io, given_info))
        if io.decimals != info.decimals
    )
    received = amounts.from_base_units(fill.input_amount, received_io.decimals)
    given = amounts.from_base_units(fill.output_amount, given_io.decimals)
    received_role = classify(received_info.symbol, rules)
    given_role = classify(given_info.symbol, rules)

    def skip(reason: str) -> Conversion:
        return Conversion(
            skipped=(SkippedFill(raw.tx_hash, raw.log_index, fill.side, reason),),
            decimals_mismatches=mismatches,
        )

    if received_role.kind is RoleKind.EQUITY and given_role.kind is RoleKind.STABLECOIN:
        direction = Direction.BUY
        equity, equity_io, shares = received_role, received_io, received
        stable, stable_io, usdc = given_role, given_io, given
    elif received_role.kind is RoleKind.STABLECOIN and given_role.kind is RoleKind.EQUITY:
        direction = Direction.SELL
        equity, equity_io, shares = given_role, given_io, given
        stable, stable_io, usdc = received_role, received_io, received
    else:
        return skip(
            f"not an equity/stablecoin pair: received {_describe(received_role)}, "
            f"gave {_describe(given_role)}"
        )
    if equity.ticker is None:  # pragma: no cover - classify sets it for every equity
        raise AssertionError(f"equity role without ticker: {equity}")
    if shares == 0:
        return skip(
            f"zero shares: {direction} of 0 {equity.symbol} for "
            f"{amounts.to_text(usdc)} {stable.symbol}"
        )
    trade = Trade(
        tx_hash=raw.tx_hash,
        log_index=raw.log_index,
        side=fill.side,
        inclusion=inclusion,
        kind=TradeKind.FILL,
        block_number=raw.block_number,
        block_hash=raw.block_hash,
        ticker=equity.ticker,
        shares=shares,
        direction=direction,
        price_usdc=amounts.price(usdc, shares),
        usdc_amount=usdc,
        equity_token=equity_io.token,
        stable_token=stable_io.token,
    )
    return Conversion(trades=(trade,), decimals_mismatches=mismatches)


def _describe(role: TokenRole) -> str:
    if role.kind is RoleKind.OTHER:
        return f"{role.symbol!r} (other: {role.reason})"
    return f"{role.symbol!r} ({role.kind})"
