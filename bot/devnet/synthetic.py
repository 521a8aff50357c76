"""Synthetic but ABI-exact orderbook logs for tests and benchmarks (no chain needed).

The encoders use the very type strings :mod:`bot.core.abi` decodes with, so a log built here is
byte-for-byte what the OrderBook would emit for the same values. :func:`synthetic_transactions`
yields a deterministic (seeded) stream over consecutive blocks with about 10% of the events ours,
each with the fills a correct conversion must produce (an independent oracle for crash tests);
:data:`SYNTHETIC_TOKENS` is the token table it uses.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from eth_abi.abi import encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from bot.core import amounts
from bot.core.abi import (
    AFTER_CLEAR_TYPES,
    CLEAR_V2_TYPES,
    IO,
    TAKE_ORDER_V2_TYPES,
    TOPIC_AFTER_CLEAR,
    TOPIC_CLEAR_V2,
    TOPIC_TAKE_ORDER_V2,
    AfterClearEvent,
    ClearEvent,
    Order,
    TakeOrderEvent,
    checksum_address,
)
from bot.core.model import Direction, RawLog, Side, TokenInfo


def address_of(label: str) -> str:
    """A deterministic checksummed address derived from a label (``address_of("owner")``)."""
    return to_checksum_address(keccak(text=f"synthetic-address:{label}")[-20:])


def hash_of(*parts: object) -> str:
    """A deterministic ``0x`` 32-byte hash derived from ``parts`` (block and tx hashes)."""
    return "0x" + keccak(text="synthetic-hash:" + ":".join(map(str, parts))).hex()


ORDERBOOK = address_of("orderbook")
OWNER = address_of("our-owner")
SENDER = address_of("sender")
INTERPRETER = address_of("interpreter")
STORE = address_of("store")

USDC = address_of("token:USDC")
AAPL = address_of("token:AAPLs1")
NVDA = address_of("token:wtNVDA")
TSLA = address_of("token:TSLA0x")
WETH = address_of("token:WETH")

SYNTHETIC_TOKENS: dict[str, TokenInfo] = {
    USDC: TokenInfo(USDC, "USDC", 6),
    AAPL: TokenInfo(AAPL, "AAPLs1", 18),
    NVDA: TokenInfo(NVDA, "wtNVDA", 18),
    TSLA: TokenInfo(TSLA, "TSLA0x", 18),
    WETH: TokenInfo(WETH, "WETH", 18),
}
EQUITIES: dict[str, str] = {AAPL: "AAPL", NVDA: "NVDA", TSLA: "TSLA"}


def make_io(token: str, decimals: int | None = None, vault_id: int = 1) -> IO:
    """An IO; ``decimals`` defaults to the synthetic token table's."""
    if decimals is None:
        decimals = SYNTHETIC_TOKENS[token].decimals
    return IO(checksum_address(token), decimals, vault_id)


def make_order(
    owner: str,
    inputs: Sequence[IO],
    outputs: Sequence[IO],
    *,
    interpreter: str = INTERPRETER,
    store: str = STORE,
    bytecode: bytes = b"\x01\x02",
    nonce: bytes = bytes(32),
) -> Order:
    return Order(
        owner=checksum_address(owner),
        interpreter=checksum_address(interpreter),
        store=checksum_address(store),
        bytecode=bytecode,
        valid_inputs=tuple(inputs),
        valid_outputs=tuple(outputs),
        nonce=nonce,
    )


# --- encoders ----------------------------------------------------------------------------------


def _order_value(order: Order) -> tuple[Any, ...]:
    return (
        order.owner,
        (order.interpreter, order.store, order.bytecode),
        [(io.token, io.decimals, io.vault_id) for io in order.valid_inputs],
        [(io.token, io.decimals, io.vault_id) for io in order.valid_outputs],
        order.nonce,
    )


def encode_take_order(
    event: TakeOrderEvent, signed_context: Sequence[tuple[str, Sequence[int], bytes]] = ()
) -> bytes:
    """``data`` of a ``TakeOrderV2`` log (the signed context is encoded, not decoded)."""
    config = (
        _order_value(event.order),
        event.input_io_index,
        event.output_io_index,
        [(signer, list(context), signature) for signer, context, signature in signed_context],
    )
    return encode(TAKE_ORDER_V2_TYPES, (event.sender, config, event.input, event.output))


def encode_clear(event: ClearEvent) -> bytes:
    """``data`` of a ``ClearV2`` log."""
    clear_config = (
        event.alice_input_io_index,
        event.alice_output_io_index,
        event.bob_input_io_index,
        event.bob_output_io_index,
        event.alice_bounty_vault_id,
        event.bob_bounty_vault_id,
    )
    values = (event.sender, _order_value(event.alice), _order_value(event.bob), clear_config)
    return encode(CLEAR_V2_TYPES, values)


def encode_after_clear(event: AfterClearEvent) -> bytes:
    """``data`` of an ``AfterClear`` log."""
    change = (event.alice_output, event.bob_output, event.alice_input, event.bob_input)
    return encode(AFTER_CLEAR_TYPES, (event.sender, change))


# --- raw logs ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class At:
    """Where a synthetic log sits; hashes default to ones derived from the block and tx index."""

    block_number: int = 1
    tx_index: int = 0
    log_index: int = 0
    block_hash: str | None = None
    tx_hash: str | None = None
    address: str = ORDERBOOK

    def log(self, topic0: str, data: bytes, log_offset: int = 0) -> RawLog:
        return RawLog(
            block_number=self.block_number,
            block_hash=self.block_hash or hash_of("block", self.block_number),
            tx_hash=self.tx_hash or hash_of("tx", self.block_number, self.tx_index),
            tx_index=self.tx_index,
            log_index=self.log_index + log_offset,
            address=self.address,
            topic0=topic0,
            data=data,
        )


def take_order_log(
    order: Order,
    *,
    input: int,
    output: int,
    input_io_index: int = 0,
    output_io_index: int = 0,
    sender: str = SENDER,
    at: At = At(),
) -> RawLog:
    """A ``TakeOrderV2`` log: ``input`` = what the taker received (the order's output)."""
    event = TakeOrderEvent(sender, order, input_io_index, output_io_index, input, output)
    return at.log(TOPIC_TAKE_ORDER_V2, encode_take_order(event))


def clear_logs(
    alice: Order,
    bob: Order,
    *,
    alice_input: int,
    alice_output: int,
    bob_input: int,
    bob_output: int,
    alice_input_io_index: int = 0,
    alice_output_io_index: int = 0,
    bob_input_io_index: int = 0,
    bob_output_io_index: int = 0,
    alice_bounty_vault_id: int = 0,
    bob_bounty_vault_id: int = 0,
    sender: str = SENDER,
    at: At = At(),
) -> tuple[RawLog, RawLog]:
    """The ``ClearV2`` and its ``AfterClear``, at ``at.log_index`` and the next log index."""
    clear = ClearEvent(
        sender, alice, bob,
        alice_input_io_index, alice_output_io_index, bob_input_io_index, bob_output_io_index,
        alice_bounty_vault_id, bob_bounty_vault_id,
    )  # fmt: skip
    after = AfterClearEvent(sender, alice_output, bob_output, alice_input, bob_input)
    return (
        at.log(TOPIC_CLEAR_V2, encode_clear(clear)),
        at.log(TOPIC_AFTER_CLEAR, encode_after_clear(after), log_offset=1),
    )


# --- deterministic stream ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExpectedFill:
    """A trade a correct conversion must produce for one of our orders."""

    side: Side
    ticker: str
    direction: Direction
    shares: Decimal
    usdc_amount: Decimal


@dataclass(frozen=True, slots=True)
class SyntheticTx:
    """One transaction's logs and the fills of ours they contain (empty when not ours)."""

    logs: tuple[RawLog, ...]
    expected: tuple[ExpectedFill, ...]


class _Stream:
    def __init__(self, seed: int, owner: str) -> None:
        self.rng = random.Random(seed)
        self.owner = owner
        self.others = [address_of(f"other-owner:{seed}:{i}") for i in range(7)]

    def _order(self, owner: str, receives: str, gives: str) -> tuple[Order, int, int]:
        """An order with a decoy IO beside each real one; returns it and the real IO indexes."""
        rng = self.rng
        decoy = WETH if WETH not in (receives, gives) else USDC
        inputs = [make_io(receives, vault_id=rng.randrange(1, 2**64)), make_io(decoy)]
        outputs = [make_io(gives, vault_id=rng.randrange(1, 2**64)), make_io(decoy)]
        rng.shuffle(inputs)
        rng.shuffle(outputs)
        nonce = rng.randbytes(32)
        order = make_order(owner, inputs, outputs, nonce=nonce)
        in_index = next(i for i, io in enumerate(inputs) if io.token == receives)
        out_index = next(i for i, io in enumerate(outputs) if io.token == gives)
        return order, in_index, out_index

    def _amounts(self) -> tuple[int, int]:
        """Fractional 18-decimal shares (up to ~500) and the 6-decimal USDC paid for them."""
        rng = self.rng
        shares_raw = rng.randrange(10**15, 500 * 10**18)
        price_micro = rng.randrange(1_000_000, 2_000 * 10**6)
        return shares_raw, max(1, shares_raw * price_micro // 10**18)

    def _pair(self, ours: bool) -> tuple[str, str]:
        """(equity-like token, counter token): ours always trade an equity against USDC."""
        equity = self.rng.choice(list(EQUITIES))
        if ours:
            return equity, USDC
        return equity, self.rng.choice([USDC, USDC, WETH, NVDA if equity != NVDA else AAPL])

    def take(self, ours: bool, at: At) -> SyntheticTx:
        rng = self.rng
        owner = self.owner if ours else rng.choice(self.others)
        equity, counter = self._pair(ours)
        sells_equity = rng.random() < 0.5
        shares_raw, usdc_raw = self._amounts()
        receives, gives = (counter, equity) if sells_equity else (equity, counter)
        order, in_index, out_index = self._order(owner, receives, gives)
        # the order's input amount is the event's `output` (what the taker paid)
        order_in, order_out = (usdc_raw, shares_raw) if sells_equity else (shares_raw, usdc_raw)
        log = take_order_log(
            order,
            input=order_out,
            output=order_in,
            input_io_index=in_index,
            output_io_index=out_index,
            at=at,
        )
        expected = (
            (self._fill(Side.TAKE, equity, sells_equity, shares_raw, usdc_raw),) if ours else ()
        )
        return SyntheticTx((log,), expected)

    def clear(self, ours: bool, at: At) -> SyntheticTx:
        rng = self.rng
        equity, counter = self._pair(ours)
        shares_raw, usdc_raw = self._amounts()
        # the giver gives equity; the other receives it less a bounty and pays a little more
        shares_other = shares_raw - rng.randrange(0, shares_raw // 1000 + 1)
        usdc_other = usdc_raw + rng.randrange(0, 1000)
        owners = rng.sample(self.others, 2)
        our_side = rng.choice([Side.ALICE, Side.BOB]) if ours else None
        if our_side is not None:
            owners[0 if our_side is Side.ALICE else 1] = self.owner
        alice_gives = rng.random() < 0.5
        # (order, input IO index, output IO index, input amount, output amount) of each side
        giver = (*self._order(owners[not alice_gives], counter, equity), usdc_raw, shares_raw)
        other = (*self._order(owners[alice_gives], equity, counter), shares_other, usdc_other)
        alice, bob = (giver, other) if alice_gives else (other, giver)
        logs = clear_logs(
            alice[0],
            bob[0],
            alice_input=alice[3],
            alice_output=alice[4],
            bob_input=bob[3],
            bob_output=bob[4],
            alice_input_io_index=alice[1],
            alice_output_io_index=alice[2],
            bob_input_io_index=bob[1],
            bob_output_io_index=bob[2],
            alice_bounty_vault_id=rng.randrange(0, 2**32),
            bob_bounty_vault_id=rng.randrange(0, 2**32),
            at=at,
        )
        if our_side is None:
            return SyntheticTx(logs, ())
        if (our_side is Side.ALICE) == alice_gives:
            return SyntheticTx(logs, (self._fill(our_side, equity, True, shares_raw, usdc_raw),))
        return SyntheticTx(logs, (self._fill(our_side, equity, False, shares_other, usdc_other),))

    @staticmethod
    def _fill(side: Side, equity: str, sells: bool, shares_raw: int, usdc_raw: int) -> ExpectedFill:
        return ExpectedFill(
            side=side,
            ticker=EQUITIES[equity],
            direction=Direction.SELL if sells else Direction.BUY,
            shares=amounts.from_base_units(shares_raw, 18),
            usdc_amount=amounts.from_base_units(usdc_raw, 6),
        )


def synthetic_transactions(
    n_logs: int,
    *,
    seed: int = 0,
    owner: str = OWNER,
    orderbook: str = ORDERBOOK,
    logs_per_block: int = 4,
    first_block: int = 1,
    ours_ratio: float = 0.1,
    clear_ratio: float = 0.3,
) -> Iterator[SyntheticTx]:
    """A deterministic stream of transactions holding ``n_logs`` logs in all.

    About ``ours_ratio`` of the transactions involve ``owner`` (takes and clears, buys and sells,
    fractional 18-decimal shares against 6-decimal USDC). A new block starts once a block holds
    ``logs_per_block`` logs or more; block and transaction hashes derive from the seed.
    """
    stream = _Stream(seed, owner)
    rng = stream.rng
    block, tx_index, log_index, emitted = first_block, 0, 0, 0
    while emitted < n_logs:
        at = At(
            block_number=block,
            tx_index=tx_index,
            log_index=log_index,
            block_hash=hash_of("block", seed, block),
            tx_hash=hash_of("tx", seed, block, tx_index),
            address=orderbook,
        )
        ours = rng.random() < ours_ratio
        if n_logs - emitted >= 2 and rng.random() < clear_ratio:
            tx = stream.clear(ours, at)
        else:
            tx = stream.take(ours, at)
        yield tx
        emitted += len(tx.logs)
        tx_index += 1
        log_index += len(tx.logs)
        if log_index >= logs_per_block:
            block, tx_index, log_index = block + 1, 0, 0


def synthetic_logs(n_logs: int, **kwargs: Any) -> Iterator[RawLog]:
    """The logs of :func:`synthetic_transactions`, flattened in (block, log_index) order."""
    for tx in synthetic_transactions(n_logs, **kwargs):
        yield from tx.logs
