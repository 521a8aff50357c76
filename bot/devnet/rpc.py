"""A small synchronous JSON-RPC client over one keep-alive HTTP connection, plus receipt waits.

Dev tooling only: the bot's own RPC client lives in ``bot.chain``.
"""

from __future__ import annotations

import http.client
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from bot.errors import DevnetError, DevnetRpcError, TransactionFailedError

__all__ = [
    "DevnetError",
    "DevnetRpcError",
    "JsonRpcClient",
    "TransactionFailedError",
    "TxSender",
]

RECEIPT_TIMEOUT_S = 30.0
MAX_UNCONFIRMED_SENDS = 50
"""Wait for receipts at least this often: a piled-up pool made anvil stall (NOTES.md)."""


class JsonRpcClient:
    """Sequential JSON-RPC calls on one persistent HTTP connection (not thread-safe)."""

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DevnetError(f"not an http(s) JSON-RPC URL: {url!r}")
        self.url = url
        self._host = parts.hostname
        self._port = parts.port
        self._https = parts.scheme == "https"
        self._path = parts.path or "/"
        self._timeout_s = timeout_s
        self._ids = itertools.count(1)
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self._timeout_s)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> JsonRpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, params: list[Any] | None = None) -> Any:
        """Call ``method``; raises ``DevnetRpcError`` on an error answer, ``DevnetError``
        when the node is unreachable."""
        body = json.dumps(
            {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params or []}
        ).encode()
        raw = self._post(body)
        answer = json.loads(raw)
        if "error" in answer:
            err = answer["error"]
            raise DevnetRpcError(
                method, int(err.get("code", 0)), str(err.get("message")), err.get("data")
            )
        return answer.get("result")

    def _post(self, body: bytes) -> bytes:
        headers = {"Content-Type": "application/json"}
        # One retry on a fresh connection: the server may have closed an idle keep-alive socket.
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request("POST", self._path, body, headers)
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if attempt == 2:
                    raise DevnetError(f"JSON-RPC endpoint {self.url} unreachable: {exc}") from exc
                continue
            if response.status != 200:
                raise DevnetError(
                    f"JSON-RPC HTTP {response.status} from {self.url}: {data[:200]!r}"
                )
            return data
        raise AssertionError("unreachable")

    def wait_receipt(self, tx_hash: str, timeout_s: float = RECEIPT_TIMEOUT_S) -> dict[str, Any]:
        """Poll until the receipt exists (``eth_sendTransaction`` returns before it does)."""
        deadline = time.monotonic() + timeout_s
        delay = 0.001
        while True:
            receipt = self.call("eth_getTransactionReceipt", [tx_hash])
            if receipt is not None:
                return dict(receipt)
            if time.monotonic() > deadline:
                raise DevnetError(f"no receipt for {tx_hash} after {timeout_s} s")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


@dataclass
class TxSender:
    """Sends transactions from unlocked accounts and never lets unconfirmed sends pile up."""

    rpc: JsonRpcClient
    max_unconfirmed: int = MAX_UNCONFIRMED_SENDS
    keep_receipts: bool = False
    """Keep every receipt in ``receipts`` (auto-flushed ones too); off for endless runs."""
    receipts: list[dict[str, Any]] = field(default_factory=list)
    _pending: list[str] = field(default_factory=list)

    def send(self, sender: str, to: str | None, data: bytes, gas: int) -> str:
        """Send one transaction; returns its hash. Waits for receipts every ``max_unconfirmed``."""
        tx: dict[str, str] = {"from": sender, "data": "0x" + data.hex(), "gas": hex(gas)}
        if to is not None:
            tx["to"] = to
        tx_hash = str(self.rpc.call("eth_sendTransaction", [tx]))
        self._pending.append(tx_hash)
        if len(self._pending) >= self.max_unconfirmed:
            self.flush()
        return tx_hash

    def flush(self) -> list[dict[str, Any]]:
        """Wait for every pending receipt; raise ``TransactionFailedError`` on the first revert."""
        pending, self._pending = self._pending, []
        receipts = []
        for tx_hash in pending:
            receipt = self.rpc.wait_receipt(tx_hash)
            if int(receipt["status"], 16) != 1:
                raise TransactionFailedError(tx_hash, receipt)
            receipts.append(receipt)
        if self.keep_receipts:
            self.receipts.extend(receipts)
        return receipts

    def send_and_wait(self, sender: str, to: str | None, data: bytes, gas: int) -> dict[str, Any]:
        self.send(sender, to, data, gas)
        return self.flush()[-1]
