"""Topics and pure decoding of the three IOrderBookV4 events the bot reads (SPEC §2).

No parameter of these events is indexed, so topic0 is the only topic and every field is in the
ABI-encoded ``data``. Two entry points:

- :func:`order_owners` reads only the order owner address(es) from the ABI head, a few slices
  instead of a full decode; most orderbook events are not ours, so the drain calls it first.
- :func:`decode` decodes the whole event into typed, frozen dataclasses (exact ``int`` amounts,
  checksummed addresses) with the slicing decoder of :mod:`bot.core.abi_slices`;
  :func:`decode_reference` gives the same events through eth_abi (an order of magnitude slower),
  kept for tests and benchmarks.

All raise :class:`UndecodableLog` for an unknown topic0 or malformed data: an event is never
silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from eth_abi.abi import decode as _abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils.crypto import keccak

from bot.core.model import RawLog

# re-exported: the drain imports it from here
from bot.errors import UndecodableLog as UndecodableLog  # noqa: PLC0414

# ABI type strings of the structs, exactly as SPEC §2 defines them. The encoders in
# bot/devnet/synthetic.py use the same strings, and the topics are the keccak of the signatures.
IO_TYPE: Final = "(address,uint8,uint256)"
EVALUABLE_V3_TYPE: Final = "(address,address,bytes)"
ORDER_V3_TYPE: Final = f"(address,{EVALUABLE_V3_TYPE},{IO_TYPE}[],{IO_TYPE}[],bytes32)"
SIGNED_CONTEXT_V1_TYPE: Final = "(address,uint256[],bytes)"
TAKE_ORDER_CONFIG_V3_TYPE: Final = f"({ORDER_V3_TYPE},uint256,uint256,{SIGNED_CONTEXT_V1_TYPE}[])"
CLEAR_CONFIG_TYPE: Final = "(uint256,uint256,uint256,uint256,uint256,uint256)"
CLEAR_STATE_CHANGE_TYPE: Final = "(uint256,uint256,uint256,uint256)"

# Parameter types of each event's data (all parameters are non-indexed).
TAKE_ORDER_V2_TYPES: Final = ("address", TAKE_ORDER_CONFIG_V3_TYPE, "uint256", "uint256")
CLEAR_V2_TYPES: Final = ("address", ORDER_V3_TYPE, ORDER_V3_TYPE, CLEAR_CONFIG_TYPE)
AFTER_CLEAR_TYPES: Final = ("address", CLEAR_STATE_CHANGE_TYPE)

TOPIC_CLEAR_V2: Final = "0x692ee69af2843c70772be93470669f3c73e583316a047b6bfefdae5629de37ce"
TOPIC_AFTER_CLEAR: Final = "0x3f20e55919cca701abb2a40ab72542b25ea7eed63a50f979dd2cd3231e5f488d"
TOPIC_TAKE_ORDER_V2: Final = "0x10de99b9032184587540c04e1850dff94a7683ae1fcc9eb06098621c739c0275"
ORDERBOOK_TOPICS: Final = (TOPIC_CLEAR_V2, TOPIC_AFTER_CLEAR, TOPIC_TAKE_ORDER_V2)


def event_signature(name: str, types: tuple[str, ...]) -> str:
    """Canonical event signature, e.g. ``AfterClear(address,(uint256,...))``."""
    return f"{name}({','.join(types)})"


def topic_of(name: str, types: tuple[str, ...]) -> str:
    """topic0 of an event: lowercase ``0x`` hex keccak of its canonical signature."""
    return "0x" + keccak(text=event_signature(name, types)).hex()


@dataclass(frozen=True, slots=True)
class IO:
    """One input or output of an order; ``decimals`` is authoritative for scaling amounts."""

    token: str
    decimals: int
    vault_id: int


@dataclass(frozen=True, slots=True)
class Order:
    """An ``OrderV3`` (its ``EvaluableV3`` flattened into interpreter, store and bytecode)."""

    owner: str
    interpreter: str
    store: str
    bytecode: bytes
    valid_inputs: tuple[IO, ...]
    valid_outputs: tuple[IO, ...]
    nonce: bytes


@dataclass(frozen=True, slots=True)
class TakeOrderEvent:
    """``TakeOrderV2``: ``input`` is what the taker received (the order's output amount) and
    ``output`` what the taker paid (the order's input amount). The signed context is not kept."""

    sender: str
    order: Order
    input_io_index: int
    output_io_index: int
    input: int
    output: int


@dataclass(frozen=True, slots=True)
class ClearEvent:
    """``ClearV2``: the two orders and the clear config; the amounts are in its ``AfterClear``."""

    sender: str
    alice: Order
    bob: Order
    alice_input_io_index: int
    alice_output_io_index: int
    bob_input_io_index: int
    bob_output_io_index: int
    alice_bounty_vault_id: int
    bob_bounty_vault_id: int


@dataclass(frozen=True, slots=True)
class AfterClearEvent:
    """``AfterClear``: the amounts of the ``ClearV2`` just before it in the same call."""

    sender: str
    alice_output: int
    bob_output: int
    alice_input: int
    bob_input: int


OrderbookEvent = TakeOrderEvent | ClearEvent | AfterClearEvent


_HEX_DIGITS: Final = frozenset("0123456789abcdef")


@lru_cache(maxsize=16384)
def checksum_address(address: str | bytes) -> str:
    """EIP-55 checksummed form of a 20-byte address (hex text or bytes), cached.

    Checksumming costs a keccak, and the same few addresses (owners, tokens, interpreters) recur;
    a miss costs ~10 µs here, ~23 µs through ``eth_utils.to_checksum_address`` (its checks and
    conversions around the same keccak). ``ValueError`` for anything but 20 bytes or 40 hex
    digits (with or without ``0x``).
    """
    if isinstance(address, bytes):
        if len(address) != 20:
            raise ValueError(f"an address is 20 bytes, got {len(address)}")
        digits = address.hex()
    else:
        digits = (address[2:] if address[:2] in ("0x", "0X") else address).lower()
        if len(digits) != 40 or not _HEX_DIGITS.issuperset(digits):
            raise ValueError(f"not a 20-byte hex address: {address!r}")
    digest = keccak(digits.encode()).hex()
    # EIP-55: a letter is upper case where the hash's nibble at its place is 8 or more
    hashed = zip(digits, digest, strict=False)  # the hash is longer: its first 40 nibbles
    return "0x" + "".join([c if d < "8" else c.upper() for c, d in hashed])


_checksum = checksum_address


def _io(value: tuple[Any, ...]) -> IO:
    token, decimals, vault_id = value
    return IO(token=_checksum(token), decimals=decimals, vault_id=vault_id)


def _order(value: tuple[Any, ...]) -> Order:
    owner, (interpreter, store, bytecode), inputs, outputs, nonce = value
    return Order(
        owner=_checksum(owner),
        interpreter=_checksum(interpreter),
        store=_checksum(store),
        bytecode=bytes(bytecode),
        valid_inputs=tuple(_io(io) for io in inputs),
        valid_outputs=tuple(_io(io) for io in outputs),
        nonce=bytes(nonce),
    )


def _abi(raw: RawLog, types: tuple[str, ...]) -> tuple[Any, ...]:
    try:
        return _abi_decode(types, raw.data)
    except (DecodingError, ValueError, OverflowError, TypeError, IndexError) as exc:
        raise UndecodableLog(raw, f"{type(exc).__name__}: {exc}") from exc


def decode_reference(raw: RawLog) -> TakeOrderEvent | ClearEvent | AfterClearEvent:
    """Decode one orderbook log fully with eth_abi; raises :class:`UndecodableLog`, never returns
    None. The reference :func:`decode` (the slicing decoder) is tested and measured against."""
    topic0 = raw.topic0.lower()
    if topic0 == TOPIC_TAKE_ORDER_V2:
        sender, config, input_amount, output_amount = _abi(raw, TAKE_ORDER_V2_TYPES)
        order, input_io_index, output_io_index, _signed_context = config
        return TakeOrderEvent(
            sender=_checksum(sender),
            order=_order(order),
            input_io_index=input_io_index,
            output_io_index=output_io_index,
            input=input_amount,
            output=output_amount,
        )
    if topic0 == TOPIC_CLEAR_V2:
        sender, alice, bob, clear_config = _abi(raw, CLEAR_V2_TYPES)
        a_in, a_out, b_in, b_out, a_bounty, b_bounty = clear_config
        return ClearEvent(
            sender=_checksum(sender),
            alice=_order(alice),
            bob=_order(bob),
            alice_input_io_index=a_in,
            alice_output_io_index=a_out,
            bob_input_io_index=b_in,
            bob_output_io_index=b_out,
            alice_bounty_vault_id=a_bounty,
            bob_bounty_vault_id=b_bounty,
        )
    if topic0 == TOPIC_AFTER_CLEAR:
        sender, (alice_output, bob_output, alice_input, bob_input) = _abi(raw, AFTER_CLEAR_TYPES)
        return AfterClearEvent(
            sender=_checksum(sender),
            alice_output=alice_output,
            bob_output=bob_output,
            alice_input=alice_input,
            bob_input=bob_input,
        )
    raise UndecodableLog(raw, "unknown topic0: not ClearV2, AfterClear or TakeOrderV2")


# --- fast path: owners from the ABI head -------------------------------------------------------

_WORD = 32
_ADDRESS_PADDING = bytes(12)


def _word(raw: RawLog, position: int, what: str) -> int:
    data = raw.data
    if position < 0 or position + _WORD > len(data):
        raise UndecodableLog(
            raw, f"{what} at byte {position} is past the end of {len(data)} data bytes"
        )
    return int.from_bytes(data[position : position + _WORD], "big")


def _address_bytes(raw: RawLog, position: int, what: str) -> bytes:
    data = raw.data
    if position < 0 or position + _WORD > len(data):
        raise UndecodableLog(
            raw, f"{what} at byte {position} is past the end of {len(data)} data bytes"
        )
    if data[position : position + 12] != _ADDRESS_PADDING:
        raise UndecodableLog(raw, f"{what} at byte {position} has non-zero padding")
    return bytes(data[position + 12 : position + _WORD])


def _owner_bytes(raw: RawLog) -> tuple[bytes, ...]:
    topic0 = raw.topic0.lower()
    if topic0 == TOPIC_TAKE_ORDER_V2:
        # head: sender, offset(config), input, output; config head: offset(order), ...
        config = _word(raw, _WORD, "offset of the take-order config")
        order = config + _word(raw, config, "offset of the order in the config")
        return (_address_bytes(raw, order, "order owner"),)
    if topic0 == TOPIC_CLEAR_V2:
        # head: sender, offset(alice), offset(bob), clear config (6 static words)
        alice = _word(raw, _WORD, "offset of alice's order")
        bob = _word(raw, 2 * _WORD, "offset of bob's order")
        return (
            _address_bytes(raw, alice, "alice's owner"),
            _address_bytes(raw, bob, "bob's owner"),
        )
    if topic0 == TOPIC_AFTER_CLEAR:
        # fully static: sender + four amounts; check the shape without decoding it
        _address_bytes(raw, 0, "AfterClear sender")
        _word(raw, 4 * _WORD, "AfterClear bobInput")
        return ()
    raise UndecodableLog(raw, "unknown topic0: not ClearV2, AfterClear or TakeOrderV2")


def order_owners(raw: RawLog) -> tuple[str, ...]:
    """The owner(s) of the order(s) of a log, read from the ABI head without a full decode.

    ``TakeOrderV2`` → ``(owner,)``; ``ClearV2`` → ``(alice_owner, bob_owner)``; ``AfterClear`` →
    ``()``. Checksummed. Only the words on the path to the owners are checked (bounds, address
    padding), so malformed data elsewhere in the log is caught later by :func:`decode`, which the
    drain runs on every log that turns out to be ours.
    """
    return tuple(_checksum(owner) for owner in _owner_bytes(raw))


def order_owners_hex(raw: RawLog) -> tuple[str, ...]:
    """:func:`order_owners` as lowercase ``0x`` hex: no checksum (a keccak per address not seen
    before), for storing and comparing them."""
    return tuple("0x" + owner.hex() for owner in _owner_bytes(raw))


# --- decode: the slicing decoder ----------------------------------------------------------------

# abi_slices builds this module's dataclasses, so it is imported once they exist; importing the
# module (not a name from it) works whichever of the two is imported first.
from bot.core import abi_slices  # noqa: E402


def decode(raw: RawLog) -> TakeOrderEvent | ClearEvent | AfterClearEvent:
    """Decode one orderbook log fully; raises :class:`UndecodableLog`, never returns None.

    The slicing decoder (:func:`bot.core.abi_slices.decode_fast`): the events of
    :func:`decode_reference` for every log the Solidity ABI encoder produces, and stricter on two
    malformed shapes eth_abi follows (an offset not a multiple of 32, a ``ClearV2`` order offset
    into the clear config); see that module's docstring.
    """
    return abi_slices.decode_fast(raw)
