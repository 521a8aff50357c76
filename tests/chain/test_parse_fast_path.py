"""The inlined fast path of ``parse_log`` gives what the field-by-field checks give."""

from __future__ import annotations

from typing import Any

import pytest

from bot.chain.parse import _parse_log_checked, parse_log
from bot.errors import MalformedAnswer

HASH = "0x" + "AB" * 32  # upper case: stored lower case
LOG: dict[str, Any] = {
    "blockNumber": "0x1a2b",
    "blockHash": HASH,
    "transactionHash": "0x" + "cd" * 32,
    "transactionIndex": "0x3",
    "logIndex": "0x1f",
    "address": "0x5fbdb2315678afecb367f032d93f642f64180aa3",
    "topics": [HASH, "0x" + "00" * 32],
    "data": "0x" + "12" * 300,
}


@pytest.mark.parametrize(
    "answer",
    [
        LOG,
        {**LOG, "removed": True},
        {**LOG, "topics": []},
        {key: value for key, value in LOG.items() if key != "data"},  # no data: empty
    ],
)
def test_fast_and_checked_paths_agree(answer: dict[str, Any]) -> None:
    fast = parse_log(answer)
    assert fast == _parse_log_checked(answer)
    assert fast.block_hash == HASH.lower() and fast.address.startswith("0x5FbDB")


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("blockNumber", 16, "blockNumber"),
        ("transactionHash", "0x12", "transactionHash"),
        ("logIndex", "1f", "logIndex"),
        ("data", "12", "data"),
    ],
)
def test_a_field_off_the_fast_path_is_named_in_the_error(
    field: str, value: object, named: str
) -> None:
    with pytest.raises(MalformedAnswer, match=named):
        parse_log({**LOG, field: value})
