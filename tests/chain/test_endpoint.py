"""One RPC endpoint under stress (SPEC §6): Retry-After, the circuit breaker, the request rate,
and the live lane that never queues behind backfill. Real anvil behind a loopback proxy."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp import web

from bot.chain.endpoint import Endpoint, Lane, RateLimiter
from bot.chain.transport import HttpTransport
from bot.core.retry import BreakerState
from bot.devnet.anvil import AnvilProcess
from bot.errors import RpcError, TransientError
from tests.support.history import wait_until
from tests.support.proxies import Injection, RecordedCall, RpcProxy, TcpProxy

GET_LOGS = [{"fromBlock": "0x0", "toBlock": "0x0"}]


class HeaderProxy(RpcProxy):
    """RpcProxy whose injected 429 answers carry a ``Retry-After`` header."""

    def __init__(self, upstream_url: str, retry_after: str | None) -> None:
        super().__init__(upstream_url)
        self.retry_after = retry_after

    def _inject(self, call: RecordedCall, request_id: Any) -> web.Response | None:
        answer = super()._inject(call, request_id)
        if answer is not None and answer.status == 429 and self.retry_after is not None:
            answer.headers["Retry-After"] = self.retry_after
        return answer


class FailingProxy(RpcProxy):
    """Answers every eth_getLogs with ``status`` (a 5xx) while ``failing``."""

    def __init__(self, upstream_url: str, status: int = 502) -> None:
        super().__init__(upstream_url)
        self.failing = True
        self.status = status

    def _inject(self, call: RecordedCall, request_id: Any) -> web.Response | None:
        if self.failing:
            call.injected = "Bad Gateway"
            return web.Response(status=self.status, text="Bad Gateway")
        return None


def state(endpoint: Endpoint) -> BreakerState:
    return endpoint.breaker.state


@pytest.mark.parametrize("retry_after", ["1", None], ids=["retry-after-1", "no-header"])
async def test_retry_after_is_honoured(anvil: AnvilProcess, retry_after: str | None) -> None:
    proxy = HeaderProxy(anvil.http_url, retry_after)
    await proxy.start()
    proxy.injections.append(Injection("Too Many Requests", http_status=429))
    endpoint = Endpoint(HttpTransport(proxy.url), max_backoff_s=0.3)
    try:
        assert await endpoint.call("eth_getLogs", GET_LOGS) == []
    finally:
        await endpoint.close()
        await proxy.stop()
    first, second = proxy.get_logs_calls()
    assert first.injected == "Too Many Requests" and second.injected is None
    waited = second.at - first.at
    if retry_after is None:
        assert waited < 0.3 + 0.2  # our own backoff only: the header is what made it 1 s
    else:
        assert waited >= 1.0


async def test_breaker_opens_after_consecutive_5xx_and_half_opens(anvil: AnvilProcess) -> None:
    proxy = FailingProxy(anvil.http_url)
    await proxy.start()
    endpoint = Endpoint(HttpTransport(proxy.url), breaker_failures=3, breaker_reset_s=0.6)
    try:
        for _ in range(3):
            with pytest.raises(RpcError) as raised:
                await endpoint.call_once("eth_getLogs", GET_LOGS)
            assert raised.value.http_status == 502
        assert state(endpoint) is BreakerState.OPEN
        opened = time.monotonic()
        # open: the next attempt waits for the half-open trial instead of hitting the server
        trial = asyncio.create_task(endpoint.call_once("eth_getLogs", GET_LOGS))
        await wait_until(lambda: len(proxy.calls) == 4, timeout_s=5, what="the trial request")
        assert proxy.calls[3].at - opened >= 0.6 - 0.02
        with pytest.raises(RpcError):
            await trial  # the half-open trial failed: open again for another reset period
        assert state(endpoint) is BreakerState.OPEN
        reopened = time.monotonic()
        proxy.failing = False
        assert await endpoint.call_once("eth_getLogs", GET_LOGS) == []
        assert proxy.calls[4].at - reopened >= 0.6 - 0.02
        assert state(endpoint) is BreakerState.CLOSED
    finally:
        await endpoint.close()
        await proxy.stop()
    assert len(proxy.calls) == 5


async def test_breaker_opens_on_refused_connections(anvil: AnvilProcess) -> None:
    assert anvil.port is not None
    proxy = await TcpProxy("127.0.0.1", anvil.port).start()
    proxy.refusing = True
    attempts: list[tuple[float, str]] = []
    endpoint = Endpoint(
        HttpTransport(proxy.http_url),
        breaker_failures=2,
        breaker_reset_s=0.5,
        on_call=lambda method, outcome: attempts.append((time.monotonic(), outcome)),
    )
    try:
        for _ in range(2):
            with pytest.raises(TransientError):
                await endpoint.call_once("eth_blockNumber", [])
        assert state(endpoint) is BreakerState.OPEN
        opened = time.monotonic()
        proxy.refusing = False
        assert int(await endpoint.call_once("eth_blockNumber", []), 16) >= 0
        assert attempts[2][0] - opened >= 0.5 - 0.02  # nothing was sent while open
        assert [outcome for _at, outcome in attempts] == ["error", "error", "ok"]
        assert state(endpoint) is BreakerState.CLOSED
    finally:
        await endpoint.close()
        await proxy.stop()


async def test_json_rpc_errors_do_not_open_the_breaker(anvil: AnvilProcess) -> None:
    proxy = await RpcProxy(anvil.http_url).start()
    proxy.injections += [Injection("execution reverted", code=3) for _ in range(6)]
    endpoint = Endpoint(HttpTransport(proxy.url), breaker_failures=2, breaker_reset_s=30)
    try:
        for _ in range(6):
            with pytest.raises(RpcError):
                await endpoint.call("eth_getLogs", GET_LOGS)  # not transient: no retry
        assert state(endpoint) is BreakerState.CLOSED
        assert await endpoint.call("eth_getLogs", GET_LOGS) == []
    finally:
        await endpoint.close()
        await proxy.stop()
    assert len(proxy.get_logs_calls()) == 7


async def test_requests_per_second_is_a_real_cap(anvil: AnvilProcess) -> None:
    rate, count = 40, 60
    proxy = await RpcProxy(anvil.http_url).start()
    endpoint = Endpoint(HttpTransport(proxy.url), requests_per_second=rate)
    try:
        began = time.monotonic()
        answers = await asyncio.gather(
            *(endpoint.call("eth_chainId", [], lane=Lane.BACKFILL) for _ in range(count))
        )
        elapsed = time.monotonic() - began
    finally:
        await endpoint.close()
        await proxy.stop()
    assert answers == ["0x7a69"] * count
    arrivals = sorted(call.at for call in proxy.calls)
    assert len(arrivals) == count
    assert elapsed >= (count - 1) / rate * 0.95
    window = 0.5
    most = max(sum(1 for t in arrivals if start <= t < start + window) for start in arrivals)
    assert most <= rate * window + 1


async def test_rate_limiter_serves_the_live_lane_first() -> None:
    limiter = RateLimiter(per_second=50)
    order: list[str] = []

    async def take(name: str, lane: Lane) -> None:
        await limiter.acquire(lane)
        order.append(name)

    tasks = [asyncio.create_task(take(f"backfill-{i}", Lane.BACKFILL)) for i in range(8)]
    tasks.append(asyncio.create_task(take("live", Lane.LIVE)))  # queued last
    await asyncio.gather(*tasks)
    # the first backfill request had a free slot; the live one goes next, ahead of 7 older ones
    assert order[:2] == ["backfill-0", "live"]
    assert order[2:] == [f"backfill-{i}" for i in range(1, 8)]


async def test_live_call_is_not_queued_behind_backfill(anvil: AnvilProcess) -> None:
    proxy = await RpcProxy(anvil.http_url).start()
    endpoint = Endpoint(HttpTransport(proxy.url), requests_per_second=20)
    try:
        backfill = [
            asyncio.create_task(endpoint.call("eth_blockNumber", [], lane=Lane.BACKFILL))
            for _ in range(10)
        ]
        await wait_until(lambda: len(proxy.calls) >= 1, timeout_s=5, what="backfill started")
        began = time.monotonic()
        assert await endpoint.call("eth_chainId", [], lane=Lane.LIVE) == "0x7a69"
        live_wait = time.monotonic() - began
        await asyncio.gather(*backfill)
    finally:
        await endpoint.close()
        await proxy.stop()
    methods = [call.method for call in proxy.calls]
    assert methods.index("eth_chainId") <= 2  # ahead of at least 8 queued backfill calls
    assert live_wait < 0.2  # one slot (50 ms) at most, not the 9 slots of the backlog


async def test_many_slow_backfill_calls_do_not_hold_a_live_call(unused_tcp_port: int) -> None:
    """No shared connection-pool cap: 20 slow backfill requests in flight, a live call still
    goes out at once (SPEC §6: live requests are never queued behind backfill requests)."""
    release = asyncio.Event()

    async def handle(request: web.Request) -> web.Response:
        payload = await request.json()
        if payload["method"] == "eth_getLogs":
            await release.wait()  # a slow provider answering a big window
        return web.json_response({"jsonrpc": "2.0", "id": payload["id"], "result": "0x1"})

    app = web.Application()
    app.router.add_post("/", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    endpoint = Endpoint(HttpTransport(f"http://127.0.0.1:{unused_tcp_port}"))
    try:
        backfill = [
            asyncio.create_task(endpoint.call("eth_getLogs", [{}], lane=Lane.BACKFILL))
            for _ in range(20)
        ]
        started = time.monotonic()
        assert await asyncio.wait_for(endpoint.call("eth_blockNumber", []), 5) == "0x1"
        assert time.monotonic() - started < 1.0
        assert not any(task.done() for task in backfill)
        release.set()
        assert await asyncio.gather(*backfill) == ["0x1"] * 20
    finally:
        release.set()
        await endpoint.close()
        await runner.cleanup()
