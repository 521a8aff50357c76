"""Topics, decoding and the owner fast path of the orderbook events (SPEC §2)."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core import abi
from bot.core.abi import (
    IO,
    AfterClearEvent,
    ClearEvent,
    Order,
    TakeOrderEvent,
    UndecodableLog,
    decode,
    order_owners,
)
from bot.core.model import RawLog
from bot.devnet import synthetic
from bot.errors import EventProcessingError

# The struct definitions of SPEC §2, written out independently of bot.core.abi.
_IO = "(address,uint8,uint256)"
_EVALUABLE = "(address,address,bytes)"
_ORDER = f"(address,{_EVALUABLE},{_IO}[],{_IO}[],bytes32)"
_SIGNED_CONTEXT = "(address,uint256[],bytes)"
_TAKE_CONFIG = f"({_ORDER},uint256,uint256,{_SIGNED_CONTEXT}[])"
_CLEAR_CONFIG = "(uint256,uint256,uint256,uint256,uint256,uint256)"
_CLEAR_STATE_CHANGE = "(uint256,uint256,uint256,uint256)"


def _topic(signature: str) -> str:
    return "0x" + keccak(text=signature).hex()


def test_topics_are_keccak_of_canonical_signatures() -> None:
    assert _topic(f"ClearV2(address,{_ORDER},{_ORDER},{_CLEAR_CONFIG})") == abi.TOPIC_CLEAR_V2
    assert _topic(f"AfterClear(address,{_CLEAR_STATE_CHANGE})") == abi.TOPIC_AFTER_CLEAR
    assert _topic(f"TakeOrderV2(address,{_TAKE_CONFIG},uint256,uint256)") == abi.TOPIC_TAKE_ORDER_V2
    assert abi.ORDERBOOK_TOPICS == (
        "0x692ee69af2843c70772be93470669f3c73e583316a047b6bfefdae5629de37ce",
        "0x3f20e55919cca701abb2a40ab72542b25ea7eed63a50f979dd2cd3231e5f488d",
        "0x10de99b9032184587540c04e1850dff94a7683ae1fcc9eb06098621c739c0275",
    )


def test_decoder_type_strings_give_the_spec_topics() -> None:
    assert abi.topic_of("ClearV2", abi.CLEAR_V2_TYPES) == abi.TOPIC_CLEAR_V2
    assert abi.topic_of("AfterClear", abi.AFTER_CLEAR_TYPES) == abi.TOPIC_AFTER_CLEAR
    assert abi.topic_of("TakeOrderV2", abi.TAKE_ORDER_V2_TYPES) == abi.TOPIC_TAKE_ORDER_V2


# --- strategies --------------------------------------------------------------------------------

addresses = st.binary(min_size=20, max_size=20).map(to_checksum_address)
uint256 = st.integers(min_value=0, max_value=2**256 - 1)
ios = st.builds(IO, token=addresses, decimals=st.integers(0, 255), vault_id=uint256)
orders = st.builds(
    Order,
    owner=addresses,
    interpreter=addresses,
    store=addresses,
    bytecode=st.binary(max_size=80),
    valid_inputs=st.lists(ios, max_size=3).map(tuple),
    valid_outputs=st.lists(ios, max_size=3).map(tuple),
    nonce=st.binary(min_size=32, max_size=32),
)
takes = st.builds(
    TakeOrderEvent,
    sender=addresses,
    order=orders,
    input_io_index=uint256,
    output_io_index=uint256,
    input=uint256,
    output=uint256,
)
clears = st.builds(
    ClearEvent,
    sender=addresses,
    alice=orders,
    bob=orders,
    alice_input_io_index=uint256,
    alice_output_io_index=uint256,
    bob_input_io_index=uint256,
    bob_output_io_index=uint256,
    alice_bounty_vault_id=uint256,
    bob_bounty_vault_id=uint256,
)
after_clears = st.builds(
    AfterClearEvent,
    sender=addresses,
    alice_output=uint256,
    bob_output=uint256,
    alice_input=uint256,
    bob_input=uint256,
)
signed_contexts = st.lists(
    st.tuples(addresses, st.lists(uint256, max_size=3), st.binary(max_size=70)), max_size=2
)


def _log(topic0: str, data: bytes) -> RawLog:
    return RawLog(1, "0x" + "11" * 32, "0x" + "22" * 32, 0, 5, synthetic.ORDERBOOK, topic0, data)


# --- round trips -------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(takes, signed_contexts)
def test_take_order_round_trip_and_owner_fast_path(
    event: TakeOrderEvent, signed_context: list[tuple[str, list[int], bytes]]
) -> None:
    raw = _log(abi.TOPIC_TAKE_ORDER_V2, synthetic.encode_take_order(event, signed_context))
    assert decode(raw) == event
    assert order_owners(raw) == (event.order.owner,)


@settings(max_examples=150, deadline=None)
@given(clears)
def test_clear_round_trip_and_owner_fast_path(event: ClearEvent) -> None:
    raw = _log(abi.TOPIC_CLEAR_V2, synthetic.encode_clear(event))
    assert decode(raw) == event
    assert order_owners(raw) == (event.alice.owner, event.bob.owner)


@settings(max_examples=100, deadline=None)
@given(after_clears)
def test_after_clear_round_trip(event: AfterClearEvent) -> None:
    raw = _log(abi.TOPIC_AFTER_CLEAR, synthetic.encode_after_clear(event))
    assert decode(raw) == event
    assert order_owners(raw) == ()


def test_synthetic_builders_give_exact_values() -> None:
    ours = synthetic.make_order(
        synthetic.OWNER.lower(),
        [synthetic.make_io(synthetic.USDC, vault_id=7)],
        [synthetic.make_io(synthetic.AAPL, vault_id=2**255)],
    )
    take = synthetic.take_order_log(
        ours, input=123456789012345678901234, output=22222222222222, at=synthetic.At(log_index=3)
    )
    event = decode(take)
    assert isinstance(event, TakeOrderEvent)
    assert event.order.owner == synthetic.OWNER
    assert event.order.valid_inputs == (IO(synthetic.USDC, 6, 7),)
    assert event.order.valid_outputs == (IO(synthetic.AAPL, 18, 2**255),)
    assert (event.input, event.output) == (123456789012345678901234, 22222222222222)
    assert take.topic0 == abi.TOPIC_TAKE_ORDER_V2
    assert take.log_index == 3

    clear, after = synthetic.clear_logs(
        ours,
        ours,
        alice_input=1,
        alice_output=2,
        bob_input=3,
        bob_output=4,
        at=synthetic.At(log_index=8),
    )
    assert (clear.log_index, after.log_index) == (8, 9)
    assert clear.tx_hash == after.tx_hash
    assert clear.block_hash == after.block_hash
    assert decode(after) == AfterClearEvent(synthetic.SENDER, 2, 4, 1, 3)


def test_decode_accepts_an_upper_case_topic() -> None:
    take = next(synthetic.synthetic_logs(1))
    upper = dataclasses.replace(take, topic0="0x" + take.topic0[2:].upper())
    assert decode(upper) == decode(take)
    assert order_owners(upper) == order_owners(take)


# --- failures ----------------------------------------------------------------------------------


def test_unknown_topic_is_undecodable() -> None:
    raw = _log("0x" + "ab" * 32, bytes(64))
    with pytest.raises(UndecodableLog, match="unknown topic0") as caught:
        decode(raw)
    assert isinstance(caught.value, EventProcessingError)
    assert raw.tx_hash in str(caught.value)
    with pytest.raises(UndecodableLog, match="unknown topic0"):
        order_owners(raw)


@pytest.mark.parametrize("topic0", abi.ORDERBOOK_TOPICS)
@pytest.mark.parametrize("data", [b"", bytes(31), b"\xff" * 64])
def test_short_or_garbage_data_is_undecodable(topic0: str, data: bytes) -> None:
    with pytest.raises(UndecodableLog) as caught:
        decode(_log(topic0, data))
    assert caught.value.reason
    with pytest.raises(UndecodableLog):
        order_owners(_log(topic0, data))


def test_truncated_take_order_is_undecodable() -> None:
    take = next(synthetic.synthetic_logs(1))
    truncated = dataclasses.replace(take, data=take.data[:-32])
    with pytest.raises(UndecodableLog):
        decode(truncated)


def test_offset_past_the_end_is_reported() -> None:
    take = next(synthetic.synthetic_logs(1))
    data = bytearray(take.data)
    data[32:64] = (10**9).to_bytes(32, "big")  # offset of the config
    with pytest.raises(UndecodableLog, match="past the end"):
        order_owners(dataclasses.replace(take, data=bytes(data)))
    with pytest.raises(UndecodableLog):
        decode(dataclasses.replace(take, data=bytes(data)))


def test_dirty_owner_padding_is_undecodable() -> None:
    owner = synthetic.OWNER
    order = synthetic.make_order(owner, [synthetic.make_io(synthetic.USDC)], [])
    take = synthetic.take_order_log(order, input=1, output=2)
    data = bytearray(take.data)
    word = data.find(bytes(12) + bytes.fromhex(owner[2:]))
    assert word > 0
    data[word] = 1  # a non-zero byte in the 12-byte padding of the owner address
    dirty = dataclasses.replace(take, data=bytes(data))
    with pytest.raises(UndecodableLog, match="padding"):
        order_owners(dirty)
    with pytest.raises(UndecodableLog):
        decode(dirty)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(abi.ORDERBOOK_TOPICS), st.binary(max_size=600))
def test_arbitrary_bytes_decode_or_raise_undecodable_only(topic0: str, data: bytes) -> None:
    raw = _log(topic0, data)
    for read in (decode, order_owners):
        with contextlib.suppress(UndecodableLog):
            read(raw)


@settings(max_examples=200, deadline=None)
@given(takes, st.integers(min_value=0), st.integers(0, 255))
def test_corrupted_take_order_raises_undecodable_only(
    event: TakeOrderEvent, position: int, value: int
) -> None:
    data = bytearray(synthetic.encode_take_order(event))
    data[position % len(data)] = value
    raw = _log(abi.TOPIC_TAKE_ORDER_V2, bytes(data))
    try:
        decoded = decode(raw)
    except UndecodableLog:
        decoded = None
    try:
        owners = order_owners(raw)
    except UndecodableLog:
        assert decoded is None, "the fast path rejected a log the full decode accepts"
        return
    if isinstance(decoded, TakeOrderEvent):
        assert owners == (decoded.order.owner,)


def test_owners_as_hex_are_the_checksummed_owners_lowercased() -> None:
    logs = [log for tx in synthetic.synthetic_transactions(300, seed=3) for log in tx.logs]
    kinds = {log.topic0 for log in logs}
    assert kinds == {abi.TOPIC_TAKE_ORDER_V2, abi.TOPIC_CLEAR_V2, abi.TOPIC_AFTER_CLEAR}
    for log in logs:
        checksummed = abi.order_owners(log)
        assert abi.order_owners_hex(log) == tuple(owner.lower() for owner in checksummed)
    unknown = dataclasses.replace(logs[0], topic0="0x" + "ab" * 32)
    with pytest.raises(abi.UndecodableLog, match="unknown topic0"):
        abi.order_owners_hex(unknown)


@settings(max_examples=300)
@given(st.binary(min_size=20, max_size=20))
def test_checksum_address_is_eip55_as_eth_utils_computes_it(raw: bytes) -> None:
    expected = to_checksum_address(raw)
    assert abi.checksum_address(raw) == expected
    assert abi.checksum_address(raw.hex()) == expected
    assert abi.checksum_address("0x" + raw.hex().upper()) == expected


@pytest.mark.parametrize("bad", [b"\x00" * 19, "0x" + "1" * 39, "0x" + "g" * 40, "1_" * 20])
def test_checksum_address_refuses_what_is_no_address(bad: str | bytes) -> None:
    with pytest.raises(ValueError):
        abi.checksum_address(bad)
