"""One WebSocket JSON-RPC connection with its own reader task.

The reader only moves messages off the socket: responses resolve their request's future by id,
subscription notifications go to an unbounded queue. Nothing waits on the socket inside the read
loop, so the deadlock web3 8 has (a full subscription buffer stops the reader while a call on the
same socket waits for its answer) cannot happen here. A closed socket fails every waiting call
with :class:`~bot.errors.TransientError` and ends the notification stream.

Each notification carries ``received_at``: ``time.monotonic()`` when the bytes that completed its
message were read off the socket (the event loop's ``data_received``), not when a consumer takes
it from the queue, so time a message spends queued behind others is part of what it measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import websockets
from loguru import logger
from websockets.asyncio.client import ClientConnection
from websockets.frames import DATA_OPCODES, Frame

from bot.config import redact_url
from bot.errors import (
    ConnectionLost,
    MalformedAnswer,
    RpcError,
    RpcUnavailableError,
    TransientError,
)

# the error classes lived here once; bot.sync.backfill still imports RpcError from this module
__all__ = ["ConnectionLost", "Notification", "RpcError", "RpcUnavailableError", "WsConnection"]


@dataclass(frozen=True, slots=True)
class Notification:
    subscription: str
    result: Any
    received_at: float  # time.monotonic() when its frame was read off the socket


_CLOSED = object()


class StampedConnection(ClientConnection):
    """A client connection that notes when each data message's last frame was read.

    ``data_received`` is the moment the event loop hands us bytes from the socket; every message
    those bytes complete gets that stamp, in order, and the reader takes one per message it
    receives (``websockets`` hands messages out in the order their frames were processed).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_at: deque[float] = deque()
        self._chunk_at = 0.0

    def data_received(self, data: bytes) -> None:
        self._chunk_at = time.monotonic()
        super().data_received(data)

    def process_event(self, event: Any) -> None:
        if (
            self.response is not None  # the handshake answer is no message
            and isinstance(event, Frame)
            and event.opcode in DATA_OPCODES
            and event.fin
        ):
            self.read_at.append(self._chunk_at)
        super().process_event(event)

    def message_read_at(self) -> float:
        """The stamp of the next message handed out (now, should the library ever skip us)."""
        return self.read_at.popleft() if self.read_at else time.monotonic()


class WsConnection:
    def __init__(self, url: str, socket: ClientConnection) -> None:
        self.url = url
        self._socket = socket
        self._read_at = (
            socket.message_read_at if isinstance(socket, StampedConnection) else time.monotonic
        )
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._notifications: asyncio.Queue[Notification | object] = asyncio.Queue()
        self._closed = asyncio.Event()
        self.close_reason = ""
        self._reader = asyncio.create_task(self._read(), name=f"ws-reader {redact_url(url)}")

    @classmethod
    async def open(cls, url: str, *, timeout_s: float = 10.0) -> WsConnection:
        try:
            socket = await websockets.connect(
                url,
                open_timeout=timeout_s,
                max_size=None,
                ping_interval=20,
                ping_timeout=20,
                close_timeout=1,  # a stream we close as dead must not hold the reconnect 10 s
                create_connection=StampedConnection,
            )
        except (OSError, TimeoutError, websockets.WebSocketException) as exc:
            raise ConnectionLost(f"cannot connect to {redact_url(url)}: {exc}") from None
        return cls(url, socket)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def request(self, method: str, params: list[Any], *, timeout_s: float = 30.0) -> Any:
        if self.closed:
            raise ConnectionLost(f"connection closed: {self.close_reason}")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        payload = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        try:
            await self._socket.send(json.dumps(payload))
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            raise TransientError(f"{method} timed out after {timeout_s} s") from None
        except websockets.WebSocketException as exc:
            raise ConnectionLost(f"{method}: connection lost: {exc}") from None
        finally:
            self._waiting.pop(request_id, None)

    async def subscribe(self, *params: Any) -> str:
        subscription = await self.request("eth_subscribe", list(params))
        if not isinstance(subscription, str):
            raise MalformedAnswer(f"eth_subscribe answered {subscription!r}")
        return subscription

    async def next_notification(self) -> Notification:
        """The next subscription message; raises ConnectionLost once the socket is closed."""
        item = await self._notifications.get()
        if item is _CLOSED:
            self._notifications.put_nowait(_CLOSED)  # keep later callers failing too
            raise ConnectionLost(f"subscription stream ended: {self.close_reason}")
        assert isinstance(item, Notification)
        return item

    def pending_notifications(self) -> int:
        return self._notifications.qsize()

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        with contextlib.suppress(Exception):
            await self._socket.close()
        self._finish("closed by us")

    async def _read(self) -> None:
        try:
            async for raw in self._socket:
                self._dispatch(json.loads(raw), self._read_at())
            self._finish(f"closed by peer (code {self._socket.close_code})")
        except websockets.WebSocketException as exc:
            self._finish(f"connection lost: {exc}")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            self._finish(f"undecodable message: {exc}")
            await self._socket.close()

    def _dispatch(self, message: Any, received_at: float) -> None:
        if isinstance(message, list):  # a batch answer
            for item in message:
                self._dispatch(item, received_at)
            return
        if not isinstance(message, dict):
            logger.warning("ignoring a non-object WebSocket message from {}", redact_url(self.url))
            return
        if message.get("method") == "eth_subscription":
            params = message.get("params") or {}
            self._notifications.put_nowait(
                Notification(str(params.get("subscription")), params.get("result"), received_at)
            )
            return
        future = self._waiting.get(message.get("id", -1))
        if future is None or future.done():
            return
        error = message.get("error")
        if error is not None:
            future.set_exception(RpcError(str(error.get("message", error)), code=error.get("code")))
        else:
            future.set_result(message.get("result"))

    def _finish(self, reason: str) -> None:
        if self._closed.is_set():
            return
        self.close_reason = reason
        self._closed.set()
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionLost(reason))
        self._notifications.put_nowait(_CLOSED)
