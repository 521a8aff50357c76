"""JSON-RPC objects to domain types. Hex quantities become exact ints; hashes stay lowercase hex."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from eth_utils.address import to_checksum_address

from bot.core.heads import Head
from bot.core.model import RawLog
from bot.errors import MalformedAnswer

__all__ = ["MalformedAnswer", "parse_head", "parse_log", "quantity"]

# ~90 µs a call (keccak) was 80% of the backfill's CPU; a log stream has a handful of addresses
_checksum = lru_cache(maxsize=256)(to_checksum_address)


def quantity(value: object, what: str) -> int:
    """A JSON-RPC hex quantity (``"0x1a"``) as an exact int; ``what`` names it in the error."""
    if not isinstance(value, str) or not value.startswith("0x"):
        raise MalformedAnswer(f"{what} is {value!r}, expected a hex quantity")
    try:
        return int(value, 16)
    except ValueError:
        raise MalformedAnswer(f"{what} is {value!r}, expected a hex quantity") from None


def _quantity(obj: dict[str, Any], key: str) -> int:
    return quantity(obj.get(key), key)


def _hash(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or len(value) != 66 or not value.startswith("0x"):
        raise MalformedAnswer(f"{key} is {value!r}, expected a 32-byte hex hash")
    return value.lower()


def parse_log(obj: Any) -> RawLog:
    """One ``eth_getLogs`` / logs-subscription entry (mined: pending logs have no block).

    Anything that is not the documented shape is a :class:`MalformedAnswer` (transient: ask
    again, or ask another provider), never a bare ``ValueError`` or ``TypeError``."""
    try:
        return _parse_log(obj)
    except (ValueError, TypeError, AttributeError) as exc:
        raise MalformedAnswer(f"a log is not the documented shape: {exc}") from None


def _parse_log(obj: Any) -> RawLog:
    # the hot path of a backfill (every log of the history passes here): the checks of
    # `quantity` and `_hash`, inlined; an answer that fails one is re-checked by them, slowly,
    # for the error message
    if type(obj) is not dict:
        if not isinstance(obj, dict):
            raise MalformedAnswer(f"a log must be an object, got {type(obj).__name__}")
        obj = dict(obj)
    get = obj.get
    number, tx_index, log_index = get("blockNumber"), get("transactionIndex"), get("logIndex")
    block_hash, tx_hash = get("blockHash"), get("transactionHash")
    data = get("data", "0x")
    if not (
        type(number) is str
        and number[:2] == "0x"
        and type(tx_index) is str
        and tx_index[:2] == "0x"
        and type(log_index) is str
        and log_index[:2] == "0x"
        and type(block_hash) is str
        and len(block_hash) == 66
        and block_hash[:2] == "0x"
        and type(tx_hash) is str
        and len(tx_hash) == 66
        and tx_hash[:2] == "0x"
        and type(data) is str
        and data[:2] == "0x"
    ):
        return _parse_log_checked(obj)
    topics = get("topics") or []
    return RawLog(
        int(number, 16),
        block_hash.lower(),
        tx_hash.lower(),
        int(tx_index, 16),
        int(log_index, 16),
        _checksum(str(get("address"))),
        str(topics[0]).lower() if topics else "",
        bytes.fromhex(data[2:]),
        bool(get("removed", False)),
    )


def _parse_log_checked(obj: dict[str, Any]) -> RawLog:
    """The slow path: each field checked on its own, so the error names the one that is wrong."""
    topics = obj.get("topics") or []
    data = obj.get("data", "0x")
    if not isinstance(data, str) or not data.startswith("0x"):
        raise MalformedAnswer(f"data is {data!r}, expected hex")
    return RawLog(
        block_number=_quantity(obj, "blockNumber"),
        block_hash=_hash(obj, "blockHash"),
        tx_hash=_hash(obj, "transactionHash"),
        tx_index=_quantity(obj, "transactionIndex"),
        log_index=_quantity(obj, "logIndex"),
        address=_checksum(str(obj.get("address"))),
        topic0=str(topics[0]).lower() if topics else "",
        data=bytes.fromhex(data[2:]),
        removed=bool(obj.get("removed", False)),
    )


def parse_head(obj: Any) -> Head:
    """A ``newHeads`` message or an ``eth_getBlockByNumber`` header (else MalformedAnswer)."""
    try:
        return _parse_head(obj)
    except (ValueError, TypeError, AttributeError) as exc:
        raise MalformedAnswer(f"a header is not the documented shape: {exc}") from None


def _parse_head(obj: Any) -> Head:
    if not isinstance(obj, dict):
        raise MalformedAnswer(f"a header must be an object, got {type(obj).__name__}")
    bloom = obj.get("logsBloom") or "0x"
    return Head(
        number=_quantity(obj, "number"),
        hash=_hash(obj, "hash"),
        parent_hash=_hash(obj, "parentHash"),
        logs_bloom=bytes.fromhex(str(bloom)[2:]),
    )
