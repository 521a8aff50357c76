"""Slicing decoder of the three orderbook events (SPEC §2): the events of
:func:`bot.core.abi.decode_reference` (eth_abi), an order of magnitude faster.

eth_abi spends ~200 µs on a ``TakeOrderV2`` in generic machinery (a stream, frames, one decoder
object per field); the layouts are fixed, so this module walks the ABI head/tail offsets by hand
with ``int.from_bytes`` on 32-byte slices. Rules, each violation raising
``UndecodableLog(raw, reason)`` like the eth_abi decoder:

- every word read lies inside ``data``;
- an offset is a multiple of 32 and points past the whole head of the tuple or array holding it
  (a tail never starts inside a head) and inside the data;
- an ``address`` word has 12 zero bytes on the left, a ``uint8`` word 31 (value < 256);
- a dynamic array's length is bounded by what the rest of the data can hold, so a huge length is
  rejected before any loop; ``bytes`` are zero-padded to a multiple of 32 inside the data;
- the signed context of ``TakeOrderV2`` is validated as eth_abi does (offsets, signer padding,
  lengths, signature padding) but not built: the event does not keep it;
- bytes after the encoding are ignored (as eth_abi does).

Some bounds checks are implied by others (a head ends before its first tail, which is inside the
data); they stay where they make the next slices visibly safe and the reason clearer.

Stricter than eth_abi 6 in two cases only, both never produced by the Solidity ABI encoder, so
a chain log decodes here exactly when it decodes there:

1. an offset that is not a multiple of 32 is rejected (eth_abi follows it wherever it points);
2. a ``ClearV2`` order must start after the 9-word head: eth_abi counts the static 6-word
   ``ClearConfig`` as one head word, so it follows an order offset of 128..287 into the clear
   config and decodes those words as both the config and the order.

Addresses go through the cached :func:`bot.core.abi.checksum_address` (bytes keys).
"""

from __future__ import annotations

from typing import Final

from bot.core.abi import (
    IO,
    TOPIC_AFTER_CLEAR,
    TOPIC_CLEAR_V2,
    TOPIC_TAKE_ORDER_V2,
    AfterClearEvent,
    ClearEvent,
    Order,
    TakeOrderEvent,
    UndecodableLog,
    checksum_address,
)
from bot.core.model import RawLog
from bot.errors import AbiLayoutError

_WORD: Final = 32
_IO_SIZE: Final = 3 * _WORD  # (address, uint8, uint256): static, inline in the array
_ZERO_12: Final = bytes(12)
_ZERO_31: Final = bytes(31)
# head sizes in bytes: one word per static field or offset, six words for the inline ClearConfig
_TAKE_HEAD: Final = 4 * _WORD  # sender, offset(config), input, output
_TAKE_CONFIG_HEAD: Final = 4 * _WORD  # offset(order), inputIOIndex, outputIOIndex, offset(ctx)
_ORDER_HEAD: Final = 5 * _WORD  # owner, offset(evaluable), offset(inputs), offset(outputs), nonce
_EVALUABLE_HEAD: Final = 3 * _WORD  # interpreter, store, offset(bytecode)
_SIGNED_CONTEXT_HEAD: Final = 3 * _WORD  # signer, offset(context), offset(signature)
_CLEAR_HEAD: Final = 9 * _WORD  # sender, offset(alice), offset(bob), ClearConfig (6 words)
_AFTER_CLEAR_SIZE: Final = 5 * _WORD  # sender, ClearStateChange (4 words)


_Malformed = AbiLayoutError  # raised deep in the readers; decode_fast makes it UndecodableLog


# The readers name what they read as (field, of), e.g. ("owner", "alice's order"), and join the
# two only when they raise: formatting a name on every read would cost a third of the decode.


def _past_the_end(data: bytes, at: int, field: str, of: str) -> _Malformed:
    return _Malformed(f"{field} of {of} at byte {at} is past the end of {len(data)} data bytes")


def _address(data: bytes, at: int, field: str, of: str) -> str:
    if at + _WORD > len(data):
        raise _past_the_end(data, at, field, of)
    if data[at : at + 12] != _ZERO_12:
        raise _Malformed(f"{field} of {of} at byte {at} has non-zero address padding")
    return checksum_address(data[at + 12 : at + _WORD])


def _tail(data: bytes, base: int, head_end: int, at: int, field: str, *, of: str) -> int:
    """Absolute position of the dynamic member whose offset (relative to ``base``, the start of
    the enclosing tuple or array body) is the word at ``at``; ``head_end`` ends that head."""
    if at + _WORD > len(data):
        raise _past_the_end(data, at, f"offset of {field}", of)
    offset = int.from_bytes(data[at : at + _WORD], "big")
    position = base + offset
    # every dynamic member starts with at least one word (a length or a head field)
    if offset % _WORD or position < head_end or position + _WORD > len(data):
        if offset % _WORD:
            problem = "is not a multiple of 32"
        elif position < head_end:
            problem = "points into the head"
        else:
            problem = f"is past the end of {len(data)} data bytes"
        raise _Malformed(f"offset of {field} of {of} at byte {at} ({offset}) {problem}")
    return position


def _length(data: bytes, at: int, item_size: int, field: str, of: str) -> int:
    """Length of the array or ``bytes`` at ``at`` (inside the data: checked by :func:`_tail`),
    bounded by the data after its length word."""
    length = int.from_bytes(data[at : at + _WORD], "big")
    room = len(data) - at - _WORD
    if length * item_size > room:
        raise _Malformed(
            f"length of {field} of {of} at byte {at} ({length}) needs {length * item_size} "
            f"bytes, {room} remain"
        )
    return length


def _bytes(data: bytes, at: int, field: str, of: str) -> bytes:
    length = _length(data, at, 1, field, of)
    start = at + _WORD
    end = start + length
    padded_end = start + (length + _WORD - 1) // _WORD * _WORD
    if padded_end > len(data):
        raise _past_the_end(data, end, f"padding of {field}", of)
    if data[end:padded_end] != _ZERO_31[: padded_end - end]:
        raise _Malformed(f"padding of {field} of {of} at byte {end} is not zero")
    return data[start:end]


def _ios(data: bytes, at: int, field: str, of: str) -> tuple[IO, ...]:
    count = _length(data, at, _IO_SIZE, field, of)
    ios = []
    # the length check above keeps every slice of the loop inside the data
    for item in range(at + _WORD, at + _WORD + count * _IO_SIZE, _IO_SIZE):
        if data[item : item + 12] != _ZERO_12:
            raise _Malformed(f"a token of {field} of {of} at byte {item} has non-zero padding")
        if data[item + _WORD : item + 63] != _ZERO_31:
            raise _Malformed(f"decimals of {field} of {of} at byte {item + 32} is not a uint8")
        ios.append(
            IO(
                checksum_address(data[item + 12 : item + _WORD]),
                data[item + 63],
                int.from_bytes(data[item + 64 : item + _IO_SIZE], "big"),
            )
        )
    return tuple(ios)


def _order(data: bytes, at: int, of: str) -> Order:
    head_end = at + _ORDER_HEAD
    if head_end > len(data):
        raise _past_the_end(data, at, "head", of)
    owner = _address(data, at, "owner", of)
    evaluable = _tail(data, at, head_end, at + _WORD, "evaluable", of=of)
    inputs = _tail(data, at, head_end, at + 2 * _WORD, "valid inputs", of=of)
    outputs = _tail(data, at, head_end, at + 3 * _WORD, "valid outputs", of=of)
    # the bytecode offset is the evaluable's last head word: reading it bounds the whole head
    evaluable_end = evaluable + _EVALUABLE_HEAD
    bytecode = _tail(data, evaluable, evaluable_end, evaluable + 2 * _WORD, "bytecode", of=of)
    return Order(
        owner,
        _address(data, evaluable, "interpreter", of),
        _address(data, evaluable + _WORD, "store", of),
        _bytes(data, bytecode, "bytecode", of),
        _ios(data, inputs, "valid inputs", of),
        _ios(data, outputs, "valid outputs", of),
        data[at + 4 * _WORD : head_end],  # nonce: bytes32, any value
    )


def _check_signed_contexts(data: bytes, at: int) -> None:
    """Validate a ``SignedContextV1[]`` without building it (the events do not keep it)."""
    count = _length(data, at, _WORD, "signed contexts", "the config")  # an offset word per item
    body = at + _WORD
    body_head_end = body + count * _WORD
    for index in range(count):
        of = f"signed context {index}"  # a rare path: most takes carry no signed context
        item = _tail(data, body, body_head_end, body + index * _WORD, of, of="signed contexts")
        item_head_end = item + _SIGNED_CONTEXT_HEAD
        _address(data, item, "signer", of)
        context = _tail(data, item, item_head_end, item + _WORD, "context", of=of)
        _length(data, context, _WORD, "context", of)  # uint256[]: any word is a valid item
        signature = _tail(data, item, item_head_end, item + 2 * _WORD, "signature", of=of)
        _bytes(data, signature, "signature", of)


def _take_order(data: bytes) -> TakeOrderEvent:
    if len(data) < _TAKE_HEAD:
        raise _past_the_end(data, 0, "head", "TakeOrderV2")
    sender = _address(data, 0, "sender", "TakeOrderV2")
    config = _tail(data, 0, _TAKE_HEAD, _WORD, "the config", of="TakeOrderV2")
    config_head_end = config + _TAKE_CONFIG_HEAD
    # the signed contexts' offset is the config's last head word: reading it bounds the head
    signed_contexts = _tail(
        data, config, config_head_end, config + 3 * _WORD, "signed contexts", of="the config"
    )
    order = _tail(data, config, config_head_end, config, "the order", of="the config")
    _check_signed_contexts(data, signed_contexts)
    return TakeOrderEvent(
        sender,
        _order(data, order, "the order"),
        int.from_bytes(data[config + _WORD : config + 2 * _WORD], "big"),  # inputIOIndex
        int.from_bytes(data[config + 2 * _WORD : config + 3 * _WORD], "big"),  # outputIOIndex
        int.from_bytes(data[2 * _WORD : 3 * _WORD], "big"),  # input
        int.from_bytes(data[3 * _WORD : _TAKE_HEAD], "big"),  # output
    )


def _clear(data: bytes) -> ClearEvent:
    if len(data) < _CLEAR_HEAD:
        raise _past_the_end(data, 0, "head", "ClearV2")
    sender = _address(data, 0, "sender", "ClearV2")
    # stricter than eth_abi (see the module docstring): the orders start after all 9 head words
    alice = _tail(data, 0, _CLEAR_HEAD, _WORD, "alice's order", of="ClearV2")
    bob = _tail(data, 0, _CLEAR_HEAD, 2 * _WORD, "bob's order", of="ClearV2")
    return ClearEvent(
        sender,
        _order(data, alice, "alice's order"),
        _order(data, bob, "bob's order"),
        # the ClearConfig, inline in the head: aliceInputIOIndex, aliceOutputIOIndex,
        # bobInputIOIndex, bobOutputIOIndex, aliceBountyVaultId, bobBountyVaultId
        int.from_bytes(data[3 * _WORD : 4 * _WORD], "big"),
        int.from_bytes(data[4 * _WORD : 5 * _WORD], "big"),
        int.from_bytes(data[5 * _WORD : 6 * _WORD], "big"),
        int.from_bytes(data[6 * _WORD : 7 * _WORD], "big"),
        int.from_bytes(data[7 * _WORD : 8 * _WORD], "big"),
        int.from_bytes(data[8 * _WORD : _CLEAR_HEAD], "big"),
    )


def _after_clear(data: bytes) -> AfterClearEvent:
    if len(data) < _AFTER_CLEAR_SIZE:
        raise _past_the_end(data, 0, "head", "AfterClear")
    return AfterClearEvent(
        _address(data, 0, "sender", "AfterClear"),
        # the ClearStateChange: aliceOutput, bobOutput, aliceInput, bobInput
        int.from_bytes(data[_WORD : 2 * _WORD], "big"),
        int.from_bytes(data[2 * _WORD : 3 * _WORD], "big"),
        int.from_bytes(data[3 * _WORD : 4 * _WORD], "big"),
        int.from_bytes(data[4 * _WORD : _AFTER_CLEAR_SIZE], "big"),
    )


def decode_fast(raw: RawLog) -> TakeOrderEvent | ClearEvent | AfterClearEvent:
    """Decode one orderbook log fully by slicing; the same event as ``decode_reference`` for
    every log the Solidity ABI encoder can produce. Raises :class:`UndecodableLog` for an
    unknown topic0 or malformed data (the rules in the module docstring), never returns None."""
    topic0 = raw.topic0.lower()
    data = raw.data
    if not isinstance(data, bytes):
        # eth_abi takes bytes and bytearray; slices of a bytearray would not hash for the cache
        if not isinstance(data, bytearray):
            raise UndecodableLog(raw, f"data is {type(data).__name__}, not bytes")
        data = bytes(data)
    try:
        if topic0 == TOPIC_TAKE_ORDER_V2:
            return _take_order(data)
        if topic0 == TOPIC_CLEAR_V2:
            return _clear(data)
        if topic0 == TOPIC_AFTER_CLEAR:
            return _after_clear(data)
    except _Malformed as exc:
        raise UndecodableLog(raw, str(exc)) from None
    raise UndecodableLog(raw, "unknown topic0: not ClearV2, AfterClear or TakeOrderV2")
