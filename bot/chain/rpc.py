"""A minimal async JSON-RPC client over HTTP (aiohttp, ``json.loads`` of the raw body, no floats).

Timeouts, dropped connections, HTTP 429/5xx and the JSON-RPC errors that mean "try again"
(-32603 internal error, rate limits, "header not found", ...) raise :class:`TransientError`;
any other error raises :class:`RpcError` naming the method, code and message. Backoff, circuit
breaking, windows and WebSocket subscriptions come later.
"""

from __future__ import annotations

import itertools
import json
from decimal import Decimal
from typing import Any

import aiohttp
from eth_abi.abi import decode as abi_decode
from eth_utils.address import to_checksum_address

from bot.core.model import RawLog, TokenInfo
from bot.errors import BotError, TransientError

SYMBOL_SELECTOR = "0x95d89b41"
DECIMALS_SELECTOR = "0x313ce567"
_TRANSIENT_CODES = {-32603, 429}
_TRANSIENT_WORDS = (
    "rate limit",
    "too many requests",
    "timeout",
    "timed out",
    "try again",
    "header not found",
    "temporarily",
    "internal error",
    "busy",
)


class RpcError(BotError):
    """A JSON-RPC error that retrying will not fix."""

    def __init__(self, method: str, code: int | None, message: str) -> None:
        super().__init__(f"{method}: RPC error {code}: {message}")
        self.method = method
        self.code = code
        self.rpc_message = message


def _no_float(text: str) -> Decimal:
    return Decimal(text)


def _int(value: Any) -> int:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise RpcError("parse", None, f"expected a hex quantity, got {value!r}")
    return int(value, 16)


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def parse_log(item: dict[str, Any]) -> RawLog:
    """One JSON-RPC log object → :class:`RawLog` (checksummed address, lowercase topic0)."""
    topics = item.get("topics") or []
    data = str(item.get("data", "0x"))
    return RawLog(
        block_number=_int(item["blockNumber"]),
        block_hash=str(item["blockHash"]).lower(),
        tx_hash=str(item["transactionHash"]).lower(),
        tx_index=_int(item["transactionIndex"]),
        log_index=_int(item["logIndex"]),
        address=to_checksum_address(item["address"]),
        topic0=str(topics[0]).lower() if topics else "",
        data=bytes.fromhex(data[2:]),
        removed=bool(item.get("removed", False)),
    )


def decode_symbol(result: bytes) -> str:
    """ERC-20 ``symbol()``: an ABI string, or a bytes32 padded with zeros (old tokens)."""
    if len(result) == 32:
        return result.rstrip(b"\x00").decode("utf-8", "replace")
    (symbol,) = abi_decode(["string"], result)
    return str(symbol)


class HttpRpc:
    """``async with HttpRpc(url) as rpc: await rpc.block_number()``. Implements ChainReader."""

    def __init__(self, url: str, *, timeout_s: float = 30.0) -> None:
        self._url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)

    async def __aenter__(self) -> HttpRpc:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(self, method: str, params: list[Any]) -> Any:
        """One JSON-RPC call; the ``result`` as parsed JSON (numbers as int/Decimal)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        payload = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        try:
            async with self._session.post(self._url, json=payload) as response:
                body = await response.read()
                if response.status == 429 or response.status >= 500:
                    raise TransientError(
                        f"{method}: HTTP {response.status}",
                        retry_after_s=_retry_after(response.headers),
                    )
                if response.status >= 400:
                    raise RpcError(method, response.status, body[:200].decode("utf-8", "replace"))
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TransientError(f"{method}: {type(exc).__name__}: {exc}") from exc
        try:
            message = json.loads(body, parse_float=_no_float)
        except ValueError as exc:
            raise TransientError(f"{method}: invalid JSON in the response: {exc}") from exc
        error = message.get("error") if isinstance(message, dict) else None
        if error is not None:
            code = error.get("code")
            text = str(error.get("message", ""))
            if code in _TRANSIENT_CODES or any(w in text.lower() for w in _TRANSIENT_WORDS):
                raise TransientError(f"{method}: RPC error {code}: {text}")
            raise RpcError(method, code, text)
        if not isinstance(message, dict) or "result" not in message:
            raise RpcError(method, None, f"no result in {str(message)[:200]}")
        return message["result"]

    async def chain_id(self) -> int:
        return _int(await self.call("eth_chainId", []))

    async def block_number(self) -> int:
        return _int(await self.call("eth_blockNumber", []))

    async def get_logs(
        self, address: str, topics: list[Any], from_block: int, to_block: int
    ) -> list[RawLog]:
        result = await self.call(
            "eth_getLogs",
            [
                {
                    "address": address,
                    "topics": topics,
                    "fromBlock": hex(from_block),
                    "toBlock": hex(to_block),
                }
            ],
        )
        return [parse_log(item) for item in result]

    async def receipt_logs(self, tx_hash: str) -> list[RawLog]:
        receipt = await self.call("eth_getTransactionReceipt", [tx_hash])
        if receipt is None:
            raise TransientError(f"no receipt for {tx_hash} yet")
        return [parse_log(item) for item in receipt.get("logs", [])]

    async def eth_call(self, to: str, data: str) -> bytes:
        result = await self.call("eth_call", [{"to": to, "data": data}, "latest"])
        return bytes.fromhex(str(result)[2:])

    async def token_info(self, address: str) -> TokenInfo:
        """``symbol()`` (string or bytes32) and ``decimals()`` of an ERC-20."""
        symbol_raw = await self.eth_call(address, SYMBOL_SELECTOR)
        decimals_raw = await self.eth_call(address, DECIMALS_SELECTOR)
        if not symbol_raw or len(decimals_raw) != 32:
            raise RpcError("token_info", None, f"{address} does not answer symbol()/decimals()")
        try:
            symbol = decode_symbol(symbol_raw)
        except Exception as exc:
            raise RpcError("token_info", None, f"{address}: bad symbol(): {exc}") from exc
        decimals = int.from_bytes(decimals_raw, "big")
        if decimals > 255:
            raise RpcError("token_info", None, f"{address}: decimals() = {decimals} > 255")
        return TokenInfo(to_checksum_address(address), symbol, decimals)
