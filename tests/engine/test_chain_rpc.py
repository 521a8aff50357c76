"""The minimal HTTP JSON-RPC client the drain uses as its ChainReader, against a real anvil."""

from __future__ import annotations

import pytest
from eth_abi.abi import encode

from bot.chain.rpc import HttpRpc, RpcError, decode_symbol, parse_log
from bot.errors import TransientError


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


async def test_against_anvil(session_chain) -> None:  # type: ignore[no-untyped-def]
    deployment = session_chain.deployment
    async with HttpRpc(session_chain.http_url) as rpc:
        assert await rpc.chain_id() == 31337
        assert await rpc.block_number() >= deployment.deployment_block
        for token in deployment.tokens.values():
            info = await rpc.token_info(token.address)
            assert (info.address, info.symbol, info.decimals) == (
                token.address,
                token.symbol,
                token.decimals,
            )
        with pytest.raises(RpcError):
            await rpc.token_info(deployment.taker)  # an account: no symbol()
        logs = await rpc.get_logs(deployment.orderbook, [], 0, await rpc.block_number())
        assert all(log.address == deployment.orderbook for log in logs)
        with pytest.raises(TransientError, match="no receipt"):
            await rpc.receipt_logs("0x" + "00" * 32)  # not mined (yet): retry later


async def test_unreachable_endpoint_is_transient() -> None:
    async with HttpRpc("http://127.0.0.1:9/", timeout_s=2) as rpc:
        with pytest.raises(TransientError):
            await rpc.block_number()
