"""A provider's answer that is not the documented shape is a MalformedAnswer (transient: asked
again, or of another provider), never a bare ValueError/TypeError traceback (issue 8)."""

from __future__ import annotations

from typing import Any

import pytest

from bot.chain.parse import parse_head, parse_log, quantity
from bot.errors import MalformedAnswer, TransientError

HASH = "0x" + "ab" * 32
LOG: dict[str, Any] = {
    "blockNumber": "0x10",
    "blockHash": HASH,
    "transactionHash": HASH,
    "transactionIndex": "0x0",
    "logIndex": "0x1",
    "address": "0x5fbdb2315678afecb367f032d93f642f64180aa3",
    "topics": [HASH],
    "data": "0x00",
}
HEAD: dict[str, Any] = {"number": "0x10", "hash": HASH, "parentHash": HASH, "logsBloom": "0x00"}


def test_well_formed_answers_parse() -> None:
    assert parse_log(LOG).block_number == 16
    assert parse_head(HEAD).number == 16


@pytest.mark.parametrize(
    "answer",
    [
        None,
        [],
        {**LOG, "address": None},
        {**LOG, "address": "0x1234"},
        {**LOG, "data": "0xzz"},
        {**LOG, "logIndex": "0xnope"},
        {**LOG, "blockHash": None},
        {**LOG, "topics": 7},
    ],
)
def test_a_malformed_log_is_a_malformed_answer(answer: Any) -> None:
    with pytest.raises(MalformedAnswer):
        parse_log(answer)


@pytest.mark.parametrize(
    "answer", [None, "0x10", {**HEAD, "logsBloom": "0xgg"}, {**HEAD, "number": 16}]
)
def test_a_malformed_header_is_a_malformed_answer(answer: Any) -> None:
    with pytest.raises(MalformedAnswer):
        parse_head(answer)


def test_a_bad_quantity_is_transient() -> None:
    with pytest.raises(TransientError, match="eth_blockNumber"):
        quantity("0xzz", "eth_blockNumber")
