"""JSON-RPC transports: HTTP (aiohttp) and WebSocket (:mod:`bot.chain.ws`).

A transport sends one call and maps every failure onto the error tree: a JSON-RPC error answer
is an :class:`~bot.chain.ws.RpcError` carrying its code and message (and HTTP status when there
was one); a timeout, refused or dropped connection or a 5xx is a
:class:`~bot.errors.TransientError`. Bodies are parsed with ``json.loads`` (integers stay exact).

A rate limit (HTTP 429, or an error answer whose text says so) is also reported to the
:data:`rate_limit_observer` of the task making the call, if it set one: the endpoint retries rate
limits itself, so the backfill, which adapts its concurrency to them, would not see them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, NoReturn, Protocol

import aiohttp

from bot.chain.ws import WsConnection
from bot.config import redact_url
from bot.core.ranges import Action, classify
from bot.errors import ConnectionLost, RpcError, RpcUnavailableError, TransientError

rate_limit_observer: ContextVar[Callable[[], None] | None] = ContextVar(
    "rate_limit_observer", default=None
)
"""Called on every rate-limited call made by the task (context) that set it."""


def is_rate_limit(error: RpcError) -> bool:
    """HTTP 429, or an answer whose message says the provider is limiting our rate."""
    if error.http_status == 429:
        return True
    if error.http_status is not None:
        return False
    return classify(str(error), code=error.code).action is Action.RATE_LIMIT


def _raise_observed(error: RpcError) -> NoReturn:
    observer = rate_limit_observer.get()
    if observer is not None and is_rate_limit(error):
        observer()
    raise error


class Transport(Protocol):
    url: str

    async def call(self, method: str, params: list[Any], *, timeout_s: float) -> Any: ...

    async def close(self) -> None: ...


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    return None  # an HTTP date: fall back to our own backoff


class HttpTransport:
    def __init__(self, url: str) -> None:
        self.url = url
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                # no pool cap: backfill concurrency is capped by its workers, and a shared cap
                # here would queue live calls behind backfill requests (SPEC §6)
                connector=aiohttp.TCPConnector(limit=0),
                headers={"Content-Type": "application/json"},
            )
        return self._session

    async def call(self, method: str, params: list[Any], *, timeout_s: float) -> Any:
        payload = json.dumps(
            {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        )
        where = redact_url(self.url)
        try:
            async with self._client().post(
                self.url, data=payload, timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as response:
                body = await response.read()
                status = response.status
                retry_after = _retry_after(response.headers.get("Retry-After"))
        except TimeoutError:
            raise TransientError(f"{method} to {where} timed out after {timeout_s} s") from None
        except aiohttp.ClientError as exc:
            raise TransientError(f"{method} to {where} failed: {exc}") from None
        if status != 200:
            text = body[:300].decode("utf-8", "replace").strip() or f"HTTP {status}"
            if status == 429 or status >= 500:
                _raise_observed(
                    RpcUnavailableError(text, http_status=status, retry_after_s=retry_after)
                )
            _raise_observed(RpcError(text, code=None, http_status=status))
        try:
            answer = json.loads(body)
        except ValueError:
            raise TransientError(f"{method} to {where}: the answer is not JSON") from None
        if not isinstance(answer, dict):
            raise TransientError(f"{method} to {where}: unexpected answer {str(answer)[:100]}")
        error_obj = answer.get("error")
        if error_obj is not None:
            message = str(error_obj.get("message", error_obj))
            code = error_obj.get("code")
            _raise_observed(RpcError(message, code=code if isinstance(code, int) else None))
        return answer.get("result")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class WsTransport:
    """Calls over a WebSocket connection of their own, reopened on the next call after a drop."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._connection: WsConnection | None = None
        self._lock = asyncio.Lock()

    async def _open(self) -> WsConnection:
        async with self._lock:
            if self._connection is None or self._connection.closed:
                self._connection = await WsConnection.open(self.url)
            return self._connection

    async def call(self, method: str, params: list[Any], *, timeout_s: float) -> Any:
        connection = await self._open()
        try:
            return await connection.request(method, params, timeout_s=timeout_s)
        except ConnectionLost:
            await connection.close()
            raise
        except RpcError as error:
            _raise_observed(error)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()


class ConnectionTransport:
    """Calls on a connection someone else owns (the live feed's): never reopens or closes it."""

    def __init__(self, connection: WsConnection) -> None:
        self.url = connection.url
        self.connection = connection

    async def call(self, method: str, params: list[Any], *, timeout_s: float) -> Any:
        return await self.connection.request(method, params, timeout_s=timeout_s)

    async def close(self) -> None:
        """The owner closes the connection."""


def transport_for(url: str) -> Transport:
    if url.startswith(("ws://", "wss://")):
        return WsTransport(url)
    return HttpTransport(url)
