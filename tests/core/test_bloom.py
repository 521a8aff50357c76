"""Bloom membership: a "no" is final, so reconciling a head can skip eth_getLogs safely."""

from __future__ import annotations

from bot.core.bloom import BLOOM_BYTES, bloom_contains, bloom_of, may_have_logs

ORDERBOOK = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
OTHER = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
TOPIC = "0x10de99b9032184587540c04e1850dff94a7683ae1fcc9eb06098621c739c0275"
TRANSFER = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"


def test_bloom_of_address_and_topic_is_found() -> None:
    bloom = bloom_of([bytes.fromhex(ORDERBOOK[2:]), bytes.fromhex(TOPIC[2:])])
    assert may_have_logs(bloom, ORDERBOOK, [TRANSFER, TOPIC])


def test_other_contract_or_topic_is_not_ours() -> None:
    bloom = bloom_of([bytes.fromhex(OTHER[2:]), bytes.fromhex(TRANSFER[2:])])
    assert not may_have_logs(bloom, ORDERBOOK, [TOPIC])
    ours_but_other_event = bloom_of([bytes.fromhex(ORDERBOOK[2:]), bytes.fromhex(TRANSFER[2:])])
    assert not may_have_logs(ours_but_other_event, ORDERBOOK, [TOPIC])


def test_empty_bloom_has_nothing_and_a_malformed_one_means_maybe() -> None:
    assert not bloom_contains(bytes(BLOOM_BYTES), bytes.fromhex(ORDERBOOK[2:]))
    assert bloom_contains(b"\x00" * 10, bytes.fromhex(ORDERBOOK[2:]))
