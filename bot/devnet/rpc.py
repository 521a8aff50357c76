"""A small synchronous JSON-RPC client over one keep-alive HTTP connection, for raw node control.

Dev tooling only (``evm_mine``, ``anvil_reorg``, ``evm_snapshot``... in tests): deployment and
simulated fills go through web3.py (``bot.devnet.contracts``); the bot's own RPC client lives in
``bot.chain``.
"""

from __future__ import annotations

import http.client
import itertools
import json
from typing import Any
from urllib.parse import urlsplit

from bot.errors import DevnetError, DevnetRpcError, TransactionFailedError

__all__ = [
    "DevnetError",
    "DevnetRpcError",
    "JsonRpcClient",
    "TransactionFailedError",
]


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
