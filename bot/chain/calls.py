"""The calls the bot makes besides ``eth_getLogs``, over a resilient :class:`Endpoint`.

Implements the drain's ``ChainReader`` (token metadata, receipts) and the few reads ``run``
needs (chain id, head number).
"""

from __future__ import annotations

from eth_abi.abi import decode as abi_decode

from bot.chain.endpoint import Endpoint, Lane
from bot.chain.parse import parse_log, quantity
from bot.core.model import RawLog, TokenInfo
from bot.errors import MalformedAnswer, NotATokenError, TransientError

SYMBOL_SELECTOR = "0x95d89b41"
DECIMALS_SELECTOR = "0x313ce567"


def decode_symbol(result: bytes) -> str:
    """ERC-20 ``symbol()``: an ABI string, or a zero-padded bytes32 (older tokens)."""
    if len(result) == 32:
        return result.rstrip(b"\x00").decode("utf-8", "replace")
    (symbol,) = abi_decode(["string"], result)
    return str(symbol)


class ChainCalls:
    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    async def chain_id(self) -> int:
        return quantity(await self.endpoint.call("eth_chainId", []), "eth_chainId")

    async def block_number(self) -> int:
        return quantity(await self.endpoint.call("eth_blockNumber", []), "eth_blockNumber")

    async def _eth_call(self, to: str, data: str) -> bytes:
        result = await self.endpoint.call(
            "eth_call", [{"to": to, "data": data}, "latest"], lane=Lane.LIVE
        )
        if not isinstance(result, str) or not result.startswith("0x"):
            raise MalformedAnswer(f"eth_call answered {result!r}")
        return bytes.fromhex(result[2:])

    async def token_info(self, address: str) -> TokenInfo:
        symbol_raw = await self._eth_call(address, SYMBOL_SELECTOR)
        decimals_raw = await self._eth_call(address, DECIMALS_SELECTOR)
        if not symbol_raw or len(decimals_raw) < 32:
            raise NotATokenError(f"{address} answered no symbol()/decimals(): not an ERC-20")
        (decimals,) = abi_decode(["uint8"], decimals_raw[:32])
        return TokenInfo(address, decode_symbol(symbol_raw), int(decimals))

    async def receipt_logs(self, tx_hash: str) -> list[RawLog]:
        receipt = await self.endpoint.call("eth_getTransactionReceipt", [tx_hash])
        if receipt is None:
            raise TransientError(f"no receipt for {tx_hash} yet")
        logs = receipt.get("logs") if isinstance(receipt, dict) else None
        if not isinstance(logs, list):
            raise MalformedAnswer(f"the receipt of {tx_hash} has no list of logs: {receipt!r:.100}")
        return [parse_log(item) for item in logs]
