"""Loopback proxies that misbehave the way public providers do during an incident, seeded.

- :class:`FaultyWsProxy` forwards WebSocket JSON-RPC and answers a share of the requests
  (``eth_subscribe`` included) with ``-32603 internal error`` or ``-32005`` rate-limit error
  objects instead of forwarding them, or drops the connection.
- :class:`FaultyHttpProxy` forwards HTTP JSON-RPC and answers a share of the requests with those
  error objects, HTTP 429, HTTP 502, or a dropped connection; ``down`` refuses everything (a dead
  provider).
- :class:`LoopThread` runs proxies on an event loop of their own thread, for tests that drive a
  ``bot run`` subprocess with blocking calls.

Every fault is drawn from a ``random.Random(seed)`` and recorded in :attr:`Faults.injected`; the
seed is printed so that a failure can be replayed.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import websockets
from aiohttp import web
from websockets.asyncio.server import ServerConnection

T = TypeVar("T")

INTERNAL = {"code": -32603, "message": "internal error"}
RATE_LIMITED = {"code": -32005, "message": "Too many requests, rate limit exceeded"}


@dataclass
class Faults:
    """Which faults to inject, how often, drawn from ``seed``."""

    seed: int
    error_rate: float = 0.2
    drop_rate: float = 0.01
    kinds: tuple[str, ...] = ("internal", "rate_limit")
    enabled: bool = True
    injected: Counter[tuple[str, str]] = field(default_factory=Counter)
    forwarded: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()
        print(f"faults seeded with {self.seed}: {self.kinds} at {self.error_rate}")

    def pick(self, method: str) -> str | None:
        """The fault for one request of ``method``, or None to forward it."""
        with self._lock:
            if not self.enabled:
                self.forwarded[method] += 1
                return None
            roll = self._random.random()
            if roll < self.drop_rate:
                fault: str | None = "drop"
            elif roll < self.drop_rate + self.error_rate:
                fault = self._random.choice(self.kinds)
            else:
                fault = None
            if fault is None:
                self.forwarded[method] += 1
            else:
                self.injected[(method, fault)] += 1
            return fault

    def methods_faulted(self) -> set[str]:
        return {method for method, _fault in self.injected}


def _error(request_id: Any, fault: str) -> str:
    error = INTERNAL if fault == "internal" else RATE_LIMITED
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "error": error})


class FaultyWsProxy:
    def __init__(self, upstream_url: str, faults: Faults) -> None:
        self._upstream = upstream_url
        self.faults = faults
        self.port = 0
        self.connections = 0
        self._server: Any = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self) -> FaultyWsProxy:
        self._server = await websockets.serve(self._handle, "127.0.0.1", 0, max_size=None)
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, client: ServerConnection) -> None:
        self.connections += 1
        try:
            async with websockets.connect(self._upstream, max_size=None) as upstream:

                async def client_to_upstream() -> None:
                    async for message in client:
                        data = json.loads(message)
                        if isinstance(data, dict) and "method" in data:
                            fault = self.faults.pick(str(data["method"]))
                            if fault == "drop":
                                client.transport.abort()
                                return
                            if fault is not None:
                                await client.send(_error(data.get("id"), fault))
                                continue
                        await upstream.send(message)

                async def upstream_to_client() -> None:
                    async for message in upstream:
                        await client.send(message)

                tasks = [
                    asyncio.create_task(client_to_upstream()),
                    asyncio.create_task(upstream_to_client()),
                ]
                _done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        except (OSError, websockets.WebSocketException):
            pass


class FaultyHttpProxy:
    def __init__(self, upstream_url: str, faults: Faults) -> None:
        self._upstream = upstream_url
        self.faults = faults
        self.down = False  # refuse every request (drop the connection): a dead provider
        self.chain_id: str | None = None  # answer eth_chainId with this (another chain)
        self.lag_blocks = 0  # answer eth_blockNumber this many blocks behind (a lagging node)
        self.served: Counter[str] = Counter()  # requests forwarded, by method
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FaultyHttpProxy:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)  # any path: keys live in paths
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

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        payload = json.loads(body)
        method = str(payload.get("method")) if isinstance(payload, dict) else "batch"
        request_id = payload.get("id") if isinstance(payload, dict) else None
        fault = "drop" if self.down else self.faults.pick(method)
        if fault == "drop":
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=502)
        if fault == "429":
            return web.Response(status=429, text="Too Many Requests", headers={"Retry-After": "0"})
        if fault == "502":
            return web.Response(status=502, text="Bad Gateway")
        if fault is not None:
            return web.Response(text=_error(request_id, fault), content_type="application/json")
        self.served[method] += 1
        if method == "eth_chainId" and self.chain_id is not None:
            answer = {"jsonrpc": "2.0", "id": request_id, "result": self.chain_id}
            return web.Response(text=json.dumps(answer), content_type="application/json")
        assert self._session is not None
        async with self._session.post(
            self._upstream, data=body, headers={"Content-Type": "application/json"}
        ) as upstream:
            answer_body = await upstream.read()
            if method == "eth_blockNumber" and self.lag_blocks:
                answer = json.loads(answer_body)
                behind = max(0, int(answer["result"], 16) - self.lag_blocks)
                answer_body = json.dumps({**answer, "result": hex(behind)}).encode()
            return web.Response(
                body=answer_body, status=upstream.status, content_type="application/json"
            )


class LoopThread:
    """An event loop in a thread of its own, to serve proxies while the test blocks."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._stoppers: list[Any] = []

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(30)

    def serve(self, proxy: Any) -> Any:
        """Start ``proxy`` (anything with async start/stop) on this loop; stopped by close()."""
        self.run(proxy.start())
        self._stoppers.append(proxy)
        return proxy

    def close(self) -> None:
        async def shutdown() -> None:
            for proxy in reversed(self._stoppers):
                await proxy.stop()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        self.run(shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
