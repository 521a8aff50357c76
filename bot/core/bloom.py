"""Ethereum ``logsBloom`` membership (pure): a block whose bloom lacks the orderbook address (or
all of our topics) has no orderbook log, so reconciling it needs no ``eth_getLogs``.

A bloom can say "maybe" for a block without our logs (then we fetch); it never says "no" for a
block that has them.
"""

from __future__ import annotations

from collections.abc import Iterable

from eth_utils.crypto import keccak

BLOOM_BYTES = 256


def _bits(item: bytes) -> list[int]:
    digest = keccak(item)
    return [((digest[i] << 8) | digest[i + 1]) & 0x7FF for i in (0, 2, 4)]


def bloom_contains(bloom: bytes, item: bytes) -> bool:
    if len(bloom) != BLOOM_BYTES:
        return True  # unknown shape: assume maybe, and fetch
    return all(bloom[BLOOM_BYTES - 1 - bit // 8] & (1 << (bit % 8)) for bit in _bits(item))


def may_have_logs(bloom: bytes, address: str, topics: Iterable[str]) -> bool:
    """Whether a block with this bloom may hold a log of ``address`` with one of ``topics``."""
    if not bloom_contains(bloom, bytes.fromhex(address[2:])):
        return False
    return any(bloom_contains(bloom, bytes.fromhex(topic[2:])) for topic in topics)


def bloom_of(items: Iterable[bytes]) -> bytes:
    """The bloom of ``items`` (for tests)."""
    bloom = bytearray(BLOOM_BYTES)
    for item in items:
        for bit in _bits(item):
            bloom[BLOOM_BYTES - 1 - bit // 8] |= 1 << (bit % 8)
    return bytes(bloom)
