"""The slicing decoder (bot.core.abi_slices) against the eth_abi one (abi.decode_reference).

On every valid encoding both give equal events; on malformed data both raise UndecodableLog. The
slicing decoder is stricter in exactly two documented cases (an offset that is not a multiple of
32; a ClearV2 order offset into the clear config): those are tested explicitly, and every
differential test below allows only them. The fast path never returns a value that differs.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from collections.abc import Callable

import pytest
from eth_utils.address import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core import abi
from bot.core.abi import (
    IO,
    AfterClearEvent,
    ClearEvent,
    OrderbookEvent,
    TakeOrderEvent,
    UndecodableLog,
    decode_reference,
)
from bot.core.abi_slices import decode_fast
from bot.core.model import RawLog
from bot.devnet import synthetic

MAX_UINT256 = 2**256 - 1

# the only reasons for which the fast path may reject a log that eth_abi accepts
STRICTER = re.compile(
    r"is not a multiple of 32|offset of (alice|bob)'s order of ClearV2 at byte \d+ \(\d+\) points"
    r" into the head"
)


def _log(topic0: str, data: bytes) -> RawLog:
    return RawLog(1, "0x" + "11" * 32, "0x" + "22" * 32, 0, 5, synthetic.ORDERBOOK, topic0, data)


def _outcome(raw: RawLog, read: Callable[[RawLog], OrderbookEvent]) -> object:
    try:
        return read(raw)
    except UndecodableLog as exc:
        return exc


def _agree(raw: RawLog) -> object:
    """The fast outcome, after checking it against eth_abi's: the same event, both rejecting, or
    a rejection for one of the STRICTER reasons of a log eth_abi accepts."""
    fast = _outcome(raw, decode_fast)
    reference = _outcome(raw, decode_reference)
    if isinstance(fast, UndecodableLog):
        if not isinstance(reference, UndecodableLog):
            assert STRICTER.search(fast.reason), f"fast rejects what eth_abi accepts: {fast}"
    else:
        assert fast == reference, "the fast path returned a different value"
    return fast


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _replace_word(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + _word(value) + data[at + 32 :]


def _unique_word(data: bytes, word: bytes) -> int:
    """Position of the one 32-byte-aligned word of ``data`` equal to ``word``."""
    found = [at for at in range(0, len(data), 32) if data[at : at + 32] == word]
    assert len(found) == 1, f"{word.hex()} at {found}"
    return found[0]


def _padded(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address[2:])


# --- strategies --------------------------------------------------------------------------------

addresses = st.binary(min_size=20, max_size=20).map(to_checksum_address)
uint256 = st.one_of(st.just(0), st.just(MAX_UINT256), st.integers(0, MAX_UINT256))
ios = st.builds(
    IO, token=addresses, decimals=st.one_of(st.just(255), st.integers(0, 255)), vault_id=uint256
)
orders = st.builds(
    synthetic.make_order,
    owner=addresses,
    inputs=st.lists(ios, max_size=5),
    outputs=st.lists(ios, max_size=5),
    interpreter=addresses,
    store=addresses,
    bytecode=st.one_of(st.just(b""), st.binary(max_size=200)),
    nonce=st.binary(min_size=32, max_size=32),
)
takes = st.builds(TakeOrderEvent, addresses, orders, *[uint256] * 4)  # indexes, amounts
signed_contexts = st.lists(
    st.tuples(addresses, st.lists(uint256, max_size=4), st.binary(max_size=100)), max_size=3
)
clears = st.builds(ClearEvent, addresses, orders, orders, *[uint256] * 6)  # the ClearConfig
after_clears = st.builds(AfterClearEvent, addresses, *[uint256] * 4)

# fixed logs for the malformed-data tests: every kind of field, distinct words where one is found
SIGNER = synthetic.address_of("signer")
ORDER = synthetic.make_order(
    synthetic.OWNER,
    [IO(synthetic.USDC, 77, 2**200 + 1), IO(synthetic.WETH, 18, 5)],
    [
        IO(synthetic.AAPL, 18, MAX_UINT256),
        IO(synthetic.NVDA, 18, 2**100),
        IO(synthetic.TSLA, 18, 2**101),
        IO(synthetic.USDC, 6, 2**102),
    ],
    bytecode=bytes(range(45)),  # not a multiple of 32: the last word is padded
    nonce=b"\xaa" * 32,
)
TAKE = TakeOrderEvent(synthetic.SENDER, ORDER, 10**30 + 1, 10**30 + 2, 10**40, 10**41)
TAKE_DATA = synthetic.encode_take_order(TAKE, [(SIGNER, [10**50, 10**51, 10**52], b"\x5a" * 65)])
BOB = synthetic.make_order(synthetic.address_of("bob"), [IO(synthetic.AAPL, 18, 9)], [])
CLEAR = ClearEvent(synthetic.SENDER, ORDER, BOB, *(10**30 + i for i in range(1, 7)))
CLEAR_DATA = synthetic.encode_clear(CLEAR)
AFTER_CLEAR = AfterClearEvent(synthetic.SENDER, 1, 2, 3, MAX_UINT256)
AFTER_CLEAR_DATA = synthetic.encode_after_clear(AFTER_CLEAR)
FIXED_LOGS = [
    pytest.param(abi.TOPIC_TAKE_ORDER_V2, TAKE_DATA, TAKE, id="take"),
    pytest.param(abi.TOPIC_CLEAR_V2, CLEAR_DATA, CLEAR, id="clear"),
    pytest.param(abi.TOPIC_AFTER_CLEAR, AFTER_CLEAR_DATA, AFTER_CLEAR, id="after-clear"),
]


# --- equal events on valid encodings -----------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2026])
def test_synthetic_streams_decode_alike(seed: int) -> None:
    kinds: collections.Counter[str] = collections.Counter()
    for tx in synthetic.synthetic_transactions(5000, seed=seed):
        for raw in tx.logs:
            event = decode_fast(raw)
            assert event == decode_reference(raw)
            assert abi.decode(raw) == event
            kinds[type(event).__name__] += 1
    assert sum(kinds.values()) == 5000
    assert min(kinds[name] for name in ("TakeOrderEvent", "ClearEvent", "AfterClearEvent")) > 100


@pytest.mark.parametrize(("topic0", "data", "event"), FIXED_LOGS)
def test_fixed_logs_decode_alike(topic0: str, data: bytes, event: OrderbookEvent) -> None:
    raw = _log(topic0, data)
    assert decode_fast(raw) == decode_reference(raw) == event
    upper = dataclasses.replace(raw, topic0="0x" + topic0[2:].upper())
    assert decode_fast(upper) == event
    as_bytearray = dataclasses.replace(raw, data=bytearray(data))  # eth_abi accepts it too
    assert decode_fast(as_bytearray) == decode_reference(as_bytearray) == event


@settings(max_examples=200, deadline=None)
@given(takes, signed_contexts)
def test_take_orders_decode_alike(
    event: TakeOrderEvent, signed_context: list[tuple[str, list[int], bytes]]
) -> None:
    raw = _log(abi.TOPIC_TAKE_ORDER_V2, synthetic.encode_take_order(event, signed_context))
    assert decode_fast(raw) == decode_reference(raw) == event


@settings(max_examples=150, deadline=None)
@given(clears)
def test_clears_decode_alike(event: ClearEvent) -> None:
    raw = _log(abi.TOPIC_CLEAR_V2, synthetic.encode_clear(event))
    assert decode_fast(raw) == decode_reference(raw) == event


@settings(max_examples=100, deadline=None)
@given(after_clears)
def test_after_clears_decode_alike(event: AfterClearEvent) -> None:
    raw = _log(abi.TOPIC_AFTER_CLEAR, synthetic.encode_after_clear(event))
    assert decode_fast(raw) == decode_reference(raw) == event


def test_trailing_bytes_are_ignored_by_both() -> None:
    raw = _log(abi.TOPIC_TAKE_ORDER_V2, TAKE_DATA + b"\xff" * 33)
    assert decode_fast(raw) == decode_reference(raw) == TAKE


# --- malformed data: both reject ---------------------------------------------------------------


def _both_reject(topic0: str, data: bytes) -> str:
    """Assert both decoders raise UndecodableLog; the fast path's reason."""
    raw = _log(topic0, data)
    with pytest.raises(UndecodableLog):
        decode_reference(raw)
    with pytest.raises(UndecodableLog) as caught:
        decode_fast(raw)
    return caught.value.reason


@pytest.mark.parametrize(("topic0", "data", "event"), FIXED_LOGS)
def test_every_truncation_is_rejected_by_both(
    topic0: str, data: bytes, event: OrderbookEvent
) -> None:
    # the last bytes of each encoding belong to a field (signature padding, an IO, bobInput)
    for length in range(len(data)):
        _both_reject(topic0, data[:length])


@pytest.mark.parametrize(("topic0", "data", "event"), FIXED_LOGS)
def test_every_word_replaced_by_edge_values_agrees(
    topic0: str, data: bytes, event: OrderbookEvent
) -> None:
    """Offsets past the end or into a head, huge lengths, dirty padding, uint8 > 255: whatever
    word gets whatever edge value, the two decoders agree (or the fast one is STRICTER)."""
    values = [0, 1, 31, 32, 255, 256, 2**160, 2**255, MAX_UINT256]
    values += [len(data) - 64, len(data) - 32, len(data), len(data) + 32]
    outcomes: collections.Counter[str] = collections.Counter()
    for at in range(0, len(data), 32):
        for value in values:
            outcome = _agree(_log(topic0, _replace_word(data, at, value)))
            outcomes["rejected" if isinstance(outcome, UndecodableLog) else "decoded"] += 1
    assert outcomes["rejected"] > 0
    assert outcomes["decoded"] > 0


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([(abi.TOPIC_TAKE_ORDER_V2, TAKE_DATA), (abi.TOPIC_CLEAR_V2, CLEAR_DATA)]),
    st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_corrupted_bytes_agree(log: tuple[str, bytes], corruptions: list[tuple[int, int]]) -> None:
    topic0, data = log
    corrupted = bytearray(data)
    for position, value in corruptions:
        corrupted[position % len(corrupted)] = value
    _agree(_log(topic0, bytes(corrupted)))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(abi.ORDERBOOK_TOPICS), st.binary(max_size=700))
def test_arbitrary_bytes_agree(topic0: str, data: bytes) -> None:
    _agree(_log(topic0, data))


def test_offsets_just_past_the_end() -> None:
    # each offset in turn aimed at the first byte after the data: the reason names that offset
    config = int.from_bytes(TAKE_DATA[32:64], "big")
    order = config + int.from_bytes(TAKE_DATA[config : config + 32], "big")
    evaluable = order + int.from_bytes(TAKE_DATA[order + 32 : order + 64], "big")
    offsets = [
        (32, 0, "the config"),
        (config, config, "the order"),
        (config + 96, config, "signed contexts"),
        (order + 32, order, "evaluable"),
        (order + 64, order, "valid inputs"),
        (order + 96, order, "valid outputs"),
        (evaluable + 64, evaluable, "bytecode"),
    ]
    for at, base, field in offsets:
        data = _replace_word(TAKE_DATA, at, len(TAKE_DATA) - base)
        reason = _both_reject(abi.TOPIC_TAKE_ORDER_V2, data)
        assert f"offset of {field} " in reason
        assert "past the end" in reason
    for value in (len(CLEAR_DATA), 2**255):  # bob's order of a clear
        reason = _both_reject(abi.TOPIC_CLEAR_V2, _replace_word(CLEAR_DATA, 64, value))
        assert "offset of bob's order" in reason
        assert "past the end" in reason


def test_truncated_padding_is_reported() -> None:
    # the signature (65 bytes) is the last value: cutting its padding short is named as such
    reason = _both_reject(abi.TOPIC_TAKE_ORDER_V2, TAKE_DATA[:-1])
    assert "padding of signature" in reason
    assert "past the end" in reason


def test_offset_into_the_head() -> None:
    data = _replace_word(TAKE_DATA, 32, 96)  # the config would start at the `output` word
    assert "points into the head" in _both_reject(abi.TOPIC_TAKE_ORDER_V2, data)


# the length words of TAKE_DATA (each a value no other word has) and their item sizes
LENGTHS = [(2, 96, "valid inputs"), (4, 96, "valid outputs"), (45, 1, "bytecode")]
LENGTHS += [(1, 32, "signed contexts"), (3, 32, "context"), (65, 1, "signature")]


@pytest.mark.parametrize("huge", [None, 2**32, 2**64, 2**255, MAX_UINT256])
@pytest.mark.parametrize(("current", "item_size", "field"), LENGTHS)
def test_lengths_past_the_data(current: int, item_size: int, field: str, huge: int | None) -> None:
    at = _unique_word(TAKE_DATA, _word(current))
    # None: the smallest length whose items no longer fit in the data
    too_long = (len(TAKE_DATA) - at - 32) // item_size + 1 if huge is None else huge
    data = _replace_word(TAKE_DATA, at, too_long)
    assert f"length of {field}" in _both_reject(abi.TOPIC_TAKE_ORDER_V2, data)


ADDRESSES = [(synthetic.SENDER, "sender"), (synthetic.OWNER, "owner"), (SIGNER, "signer")]
ADDRESSES += [(synthetic.INTERPRETER, "interpreter"), (synthetic.STORE, "store")]
ADDRESSES += [(synthetic.WETH, "token")]


@pytest.mark.parametrize("dirty_byte", [0, 11])
@pytest.mark.parametrize(("address", "field"), ADDRESSES)
def test_non_zero_address_padding(address: str, field: str, dirty_byte: int) -> None:
    at = _unique_word(TAKE_DATA, _padded(address))
    data = bytearray(TAKE_DATA)
    data[at + dirty_byte] = 1
    reason = _both_reject(abi.TOPIC_TAKE_ORDER_V2, bytes(data))
    assert field in reason
    assert "padding" in reason


@pytest.mark.parametrize("decimals", [256, 2**8 + 77, 2**255])
def test_decimals_beyond_uint8(decimals: int) -> None:
    at = _unique_word(TAKE_DATA, _word(77))
    data = _replace_word(TAKE_DATA, at, decimals)
    assert "not a uint8" in _both_reject(abi.TOPIC_TAKE_ORDER_V2, data)
    # 255 is still a uint8
    event = decode_fast(_log(abi.TOPIC_TAKE_ORDER_V2, _replace_word(TAKE_DATA, at, 255)))
    assert isinstance(event, TakeOrderEvent)
    assert event.order.valid_inputs[0].decimals == 255


@pytest.mark.parametrize(("length", "field"), [(45, "bytecode"), (65, "signature")])
def test_non_zero_bytes_padding(length: int, field: str) -> None:
    at = _unique_word(TAKE_DATA, _word(length))
    last_word = at + 32 + (length // 32) * 32
    data = bytearray(TAKE_DATA)
    data[last_word + 31] = 1  # the last padding byte after the value
    assert f"padding of {field}" in _both_reject(abi.TOPIC_TAKE_ORDER_V2, bytes(data))


def test_unknown_topic_and_non_bytes_data() -> None:
    assert "unknown topic0" in _both_reject("0x" + "ab" * 32, TAKE_DATA)
    for data in ("0x00", memoryview(TAKE_DATA)):
        raw = dataclasses.replace(_log(abi.TOPIC_TAKE_ORDER_V2, b""), data=data)
        with pytest.raises(UndecodableLog):
            decode_reference(raw)
        with pytest.raises(UndecodableLog, match="not bytes"):
            decode_fast(raw)


# --- the two cases where the fast path is stricter than eth_abi --------------------------------


def test_an_offset_not_a_multiple_of_32_is_rejected() -> None:
    """eth_abi follows an unaligned offset: the config of a take moved one byte on (all its inner
    offsets are relative, so the config still decodes) is accepted there, rejected here; the
    Solidity encoder only writes multiples of 32."""
    assert TAKE_DATA[32:64] == _word(128)
    moved = TAKE_DATA[:32] + _word(129) + TAKE_DATA[64:128] + b"\x00" + TAKE_DATA[128:]
    raw = _log(abi.TOPIC_TAKE_ORDER_V2, moved)
    assert decode_reference(raw) == TAKE
    for read in (decode_fast, abi.decode):  # abi.decode is the fast path
        with pytest.raises(UndecodableLog, match="not a multiple of 32") as caught:
            read(raw)
        assert STRICTER.search(caught.value.reason)


def test_a_clear_order_inside_the_clear_config_is_rejected() -> None:
    """eth_abi counts the inline 6-word ClearConfig as one head word, so it follows an order
    offset of 128 into the config and reads those words as both; here an order must start after
    the 9-word head."""
    alice = int.from_bytes(CLEAR_DATA[32:64], "big")
    assert alice == 9 * 32
    head = [CLEAR_DATA[alice + 32 * i : alice + 32 * (i + 1)] for i in range(5)]
    shift = alice - 128
    moved_head = (
        [head[0]] + [_word(int.from_bytes(w, "big") + shift) for w in head[1:4]] + [head[4]]
    )
    data = CLEAR_DATA[:32] + _word(128) + CLEAR_DATA[64:128] + b"".join(moved_head)
    data += CLEAR_DATA[288:]
    raw = _log(abi.TOPIC_CLEAR_V2, data)
    accepted = decode_reference(raw)
    assert isinstance(accepted, ClearEvent)
    assert accepted.alice == CLEAR.alice
    # the config eth_abi reports is alice's head, read a second time
    assert accepted.alice_output_io_index == int.from_bytes(moved_head[0], "big")
    for read in (decode_fast, abi.decode):
        with pytest.raises(
            UndecodableLog, match=r"alice's order .* points into the head"
        ) as caught:
            read(raw)
        assert STRICTER.search(caught.value.reason)
