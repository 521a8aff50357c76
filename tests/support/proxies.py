"""Loopback proxies the tests control, standing between the bot and a real anvil.

- :class:`TcpProxy` forwards raw bytes and can cut every connection, refuse new ones, or go
  silent (keep sockets open, forward nothing) to imitate a stream that dies without closing.
- :class:`RpcProxy` forwards HTTP JSON-RPC, records every request, and answers chosen
  ``eth_getLogs`` calls with a provider's error instead of forwarding them.
- :class:`WsProxy` forwards WebSocket frames and can inject extra subscription messages (anvil
  1.7.1 never sends ``removed: true`` logs, so the tests inject them here).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import websockets
from aiohttp import web
from websockets.asyncio.server import ServerConnection


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self.refusing = False
        self.silent = False
        self.connections_accepted = 0
        self.port = 0

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.close()
            return
        self.connections_accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.close()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, downstream=False),
                self._pump(up_reader, writer, downstream=True),
            )
        finally:
            self._pairs.discard(pair)
            for w in pair:
                w.close()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, downstream: bool
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                if self.silent:
                    continue  # swallow: the stream stays open but says nothing
                writer.write(data)
                await writer.drain()
        writer.close()

    def cut(self) -> None:
        """Close every open connection now (both sides see a dropped TCP connection)."""
        for client, upstream in list(self._pairs):
            for w in (client, upstream):
                transport = w.transport
                transport.abort()

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@dataclass
class RecordedCall:
    at: float
    method: str
    params: list[Any]
    injected: str | None = None

    @property
    def block_range(self) -> tuple[int, int] | None:
        if self.method != "eth_getLogs" or not self.params:
            return None
        query = self.params[0]
        if "fromBlock" not in query:
            return None
        return int(query["fromBlock"], 16), int(query["toBlock"], 16)


@dataclass
class Injection:
    """One error answer for the next eth_getLogs that matches ``when``."""

    message: str
    code: int | None = None
    http_status: int | None = None
    when: Callable[[RecordedCall], bool] = field(default=lambda call: True)


_RANGE_IN_BRACKETS = re.compile(r"\[\s*(0x[0-9a-fA-F]+|\d+)\s*,\s*(0x[0-9a-fA-F]+|\d+)\s*\]")
_RANGE_DASHED = re.compile(r"range\s+(\d+)-(\d+)")


def rewrite_suggestion(message: str, start: int, end: int) -> str:
    """Point a provider's suggested range at the first half of the failed request."""
    half_end = start + max(1, (end - start + 1) // 2) - 1
    message = _RANGE_IN_BRACKETS.sub(f"[{hex(start)}, {hex(half_end)}]", message)
    return _RANGE_DASHED.sub(f"range {start}-{half_end}", message)


class RpcProxy:
    def __init__(self, upstream_url: str) -> None:
        self._upstream = upstream_url
        self.calls: list[RecordedCall] = []
        self.injections: list[Injection] = []
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> RpcProxy:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def get_logs_calls(self) -> list[RecordedCall]:
        return [call for call in self.calls if call.method == "eth_getLogs"]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        payload = json.loads(body)
        items = payload if isinstance(payload, list) else [payload]
        for item in items:
            call = RecordedCall(time.monotonic(), item.get("method", ""), item.get("params", []))
            self.calls.append(call)
            if call.method == "eth_getLogs" and not isinstance(payload, list):
                answer = self._inject(call, item.get("id"))
                if answer is not None:
                    return answer
        assert self._session is not None
        async with self._session.post(
            self._upstream, data=body, headers={"Content-Type": "application/json"}
        ) as upstream:
            return web.Response(
                body=await upstream.read(),
                status=upstream.status,
                content_type="application/json",
            )

    def _inject(self, call: RecordedCall, request_id: Any) -> web.Response | None:
        for index, injection in enumerate(self.injections):
            if not injection.when(call):
                continue
            del self.injections[index]
            message = injection.message
            if call.block_range is not None:
                message = rewrite_suggestion(message, *call.block_range)
            call.injected = message
            if injection.http_status is not None:
                return web.Response(status=injection.http_status, text=message)
            error = {"code": injection.code, "message": message}
            return web.json_response({"jsonrpc": "2.0", "id": request_id, "error": error})
        return None


class WsProxy:
    """Forwards WebSocket traffic and lets a test inject subscription messages."""

    def __init__(self, upstream_url: str) -> None:
        self._upstream = upstream_url
        self._clients: set[ServerConnection] = set()
        self.log_subscriptions: dict[ServerConnection, str] = {}
        self._pending_subscribe: dict[tuple[ServerConnection, Any], str] = {}
        self.port = 0
        self._server: Any = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self) -> WsProxy:
        self._server = await websockets.serve(self._handle, "127.0.0.1", 0, max_size=None)
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, client: ServerConnection) -> None:
        self._clients.add(client)
        try:
            async with websockets.connect(self._upstream, max_size=None) as upstream:

                async def client_to_upstream() -> None:
                    async for message in client:
                        data = json.loads(message)
                        if isinstance(data, dict) and data.get("method") == "eth_subscribe":
                            kind = (data.get("params") or [None])[0]
                            self._pending_subscribe[(client, data.get("id"))] = str(kind)
                        await upstream.send(message)

                async def upstream_to_client() -> None:
                    async for message in upstream:
                        data = json.loads(message)
                        key = (client, data.get("id")) if isinstance(data, dict) else None
                        kind = self._pending_subscribe.pop(key, None) if key else None
                        if kind == "logs":
                            self.log_subscriptions[client] = data["result"]
                        await client.send(message)

                tasks = [
                    asyncio.create_task(client_to_upstream()),
                    asyncio.create_task(upstream_to_client()),
                ]
                _done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in pending:
                    task.cancel()
        except (OSError, websockets.WebSocketException):
            pass
        finally:
            self._clients.discard(client)
            self.log_subscriptions.pop(client, None)

    async def inject_log(self, log: dict[str, Any]) -> int:
        """Send ``log`` as a logs-subscription message to every subscribed client."""
        sent = 0
        for client, subscription in list(self.log_subscriptions.items()):
            message = {
                "jsonrpc": "2.0",
                "method": "eth_subscription",
                "params": {"subscription": subscription, "result": log},
            }
            await client.send(json.dumps(message))
            sent += 1
        return sent
