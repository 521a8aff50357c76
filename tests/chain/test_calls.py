"""The drain's ChainReader over a resilient endpoint, against a real anvil."""

from __future__ import annotations

import pytest
from eth_abi.abi import encode

from bot.chain.calls import ChainCalls, decode_symbol
from bot.chain.endpoint import Endpoint
from bot.chain.parse import parse_log
from bot.chain.transport import HttpTransport, transport_for
from bot.devnet.plan import make_plan
from bot.devnet.simulate import run_plan
from bot.errors import NotATokenError, TransientError
from tests.support.chain import Chain


def test_decode_symbol_string_and_bytes32() -> None:
    assert decode_symbol(encode(["string"], ["AAPLs1"])) == "AAPLs1"
    assert decode_symbol(b"MKR" + bytes(29)) == "MKR"


def test_parse_log_is_exact() -> None:
    log = parse_log(
        {
            "blockNumber": "0x10",
            "blockHash": "0x" + "AB" * 32,
            "transactionHash": "0x" + "cd" * 32,
            "transactionIndex": "0x2",
            "logIndex": "0x7",
            "address": "0x5fbdb2315678afecb367f032d93f642f64180aa3",
            "topics": ["0x" + "EF" * 32],
            "data": "0x0102",
        }
    )
    assert (log.block_number, log.tx_index, log.log_index, log.data) == (16, 2, 7, b"\x01\x02")
    assert log.address == "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    assert log.block_hash == "0x" + "ab" * 32 and log.topic0 == "0x" + "ef" * 32
    assert log.removed is False


@pytest.mark.parametrize("over", ["http", "ws"])
async def test_calls_against_anvil(chain: Chain, over: str) -> None:
    deployment = chain.deployment
    receipts = run_plan(chain.rpc, deployment, make_plan(seed=5, fills=4))
    url = chain.http_url if over == "http" else chain.ws_url
    calls = ChainCalls(Endpoint(transport_for(url)))
    try:
        assert await calls.chain_id() == 31337
        assert await calls.block_number() >= deployment.deployment_block
        for token in deployment.tokens.values():
            info = await calls.token_info(token.address)
            assert (info.address, info.symbol, info.decimals) == (
                token.address,
                token.symbol,
                token.decimals,
            )
        with pytest.raises(NotATokenError):
            await calls.token_info(deployment.taker)  # an account: no symbol()
        mined = receipts[-1]
        logs = await calls.receipt_logs(mined["transactionHash"])
        assert [log.log_index for log in logs] == [int(x["logIndex"], 16) for x in mined["logs"]]
        assert all(log.tx_hash == mined["transactionHash"].lower() for log in logs)
        with pytest.raises(TransientError, match="no receipt"):
            await calls.receipt_logs("0x" + "00" * 32)  # not mined (yet): retry later
    finally:
        await calls.endpoint.close()


async def test_unreachable_endpoint_is_transient() -> None:
    calls = ChainCalls(Endpoint(HttpTransport("http://127.0.0.1:9/"), max_tries=2))
    try:
        with pytest.raises(TransientError):
            await calls.block_number()
    finally:
        await calls.endpoint.close()
