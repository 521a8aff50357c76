"""The fake Alpaca's nasty wire: injected faults, the rate limit, auth, and the ways to run it."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from decimal import Decimal

import aiohttp
import pytest

from bot.devnet.fake_alpaca import FakeAlpaca
from tests.devnet.fake_alpaca_support import (
    KEYS,
    SLOW,
    call,
    order_body,
    served,
    status_of,
    wait_until,
)

DUPLICATE = (422, {"code": 40010001, "message": "client_order_id must be unique"})


@pytest.fixture
async def fake() -> FakeAlpaca:
    return FakeAlpaca(step_s=SLOW)


@pytest.fixture
async def http(fake: FakeAlpaca) -> AsyncIterator[aiohttp.ClientSession]:
    async with served(fake) as session:
        yield session


async def test_500_before_creates_nothing_500_after_creates_the_order(
    fake: FakeAlpaca, http: aiohttp.ClientSession
) -> None:
    fake.inject("POST /v2/orders", "500_before")
    status, _ = await call(http, "POST", "/v2/orders", json=order_body("a"))
    assert status == 500 and fake.orders() == []
    fake.inject("POST /v2/orders", "500_after")
    status, _ = await call(http, "POST", "/v2/orders", json=order_body("b"))
    assert status == 500
    assert status_of(fake, "b") == "new"
    assert await call(http, "POST", "/v2/orders", json=order_body("b")) == DUPLICATE
    assert (fake.post_attempts("a"), fake.post_attempts("b")) == (1, 2)
    assert [r[2] for r in fake.requests] == [500, 500, 422]


async def test_drops_close_the_connection_without_an_answer(
    fake: FakeAlpaca, http: aiohttp.ClientSession
) -> None:
    fake.inject("POST /v2/orders", "drop_before")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await call(http, "POST", "/v2/orders", json=order_body("a"))
    assert fake.order_by_client_id("a") is None
    fake.inject("POST /v2/orders", "drop_after")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await call(http, "POST", "/v2/orders", json=order_body("b"))
    assert status_of(fake, "b") == "new"
    assert fake.requests == [("POST", "/v2/orders", 0), ("POST", "/v2/orders", 0)]
    assert (await call(http, "POST", "/v2/orders", json=order_body("a")))[0] == 200


async def test_slow_after_lands_after_the_client_gave_up(
    fake: FakeAlpaca, http: aiohttp.ClientSession
) -> None:
    fake.inject("POST /v2/orders", "slow_after", delay_s=1.5)
    with pytest.raises(TimeoutError):
        await call(
            http,
            "POST",
            "/v2/orders",
            json=order_body("late"),
            timeout=aiohttp.ClientTimeout(total=0.1),
        )
    assert fake.order_by_client_id("late") is None  # not yet: a lookup now says 404
    assert (await call(http, "GET", "/v2/orders:by_client_order_id?client_order_id=late"))[0] == 404
    await wait_until(lambda: fake.order_by_client_id("late") is not None)
    assert await call(http, "POST", "/v2/orders", json=order_body("late")) == DUPLICATE


async def test_slow_after_answers_a_patient_client(
    fake: FakeAlpaca, http: aiohttp.ClientSession
) -> None:
    fake.inject("GET /v2/account", "slow_after", delay_s=0.2)
    started = time.monotonic()
    status, _ = await call(http, "GET", "/v2/account")
    assert status == 200 and time.monotonic() - started >= 0.2


async def test_gateway_pages_and_injected_429(
    fake: FakeAlpaca, http: aiohttp.ClientSession
) -> None:
    fake.inject("*", "403_html")
    fake.inject("GET /v2/clock", "502_html")
    fake.inject("GET /v2/clock", "429")
    for expected in (403, 502):
        async with http.get("/v2/clock") as resp:
            body = await resp.text()
            assert (resp.status, resp.content_type) == (expected, "text/html")
            assert body.startswith("<html>") and "nginx" in body
    async with http.get("/v2/clock") as resp:
        now = time.time()
        assert resp.status == 429
        assert await resp.json() == {"code": 42910000, "message": "rate limit exceeded"}
        assert now < int(resp.headers["X-Ratelimit-Reset"]) <= now + 2
        assert "Retry-After" not in resp.headers
    assert (await call(http, "GET", "/v2/clock"))[0] == 200


async def test_counts_and_clearing(fake: FakeAlpaca, http: aiohttp.ClientSession) -> None:
    fake.inject("GET /v2/orders/{id}", "500_before", count=2)
    fake.inject("GET /v2/positions", "500_before", count=5)
    _, order = await call(http, "POST", "/v2/orders", json=order_body("c"))
    statuses = [(await call(http, "GET", f"/v2/orders/{order['id']}"))[0] for _ in range(3)]
    assert statuses == [500, 500, 200]
    fake.clear_faults()
    assert (await call(http, "GET", "/v2/positions"))[0] == 200
    with pytest.raises(ValueError, match="unknown route"):
        fake.inject("GET /v2/nothing", "500_before")
    with pytest.raises(ValueError, match="unknown faults"):
        fake.inject("GET /v2/clock", "explode")


async def test_random_faults_are_seeded() -> None:
    seed = 7
    print(f"random fault seed {seed}")
    runs = []
    for _ in range(2):
        fake = FakeAlpaca(step_s=SLOW, seed=seed)
        fake.random_faults("GET /v2/clock", {"500_before": 0.4, "502_html": 0.2})
        async with served(fake) as http:
            runs.append([(await call_status(http, "/v2/clock")) for _ in range(30)])
    assert runs[0] == runs[1]
    assert {500, 502, 200} <= set(runs[0])


async def call_status(http: aiohttp.ClientSession, path: str) -> int:
    async with http.get(path) as resp:
        return resp.status


async def test_rate_limit_in_a_rolling_minute() -> None:
    fake = FakeAlpaca(step_s=SLOW, rate_limit_per_min=3)
    async with served(fake) as http:
        remaining = []
        for _ in range(3):
            async with http.get("/v2/clock") as resp:
                assert resp.status == 200
                assert resp.headers["X-Ratelimit-Limit"] == "3"
                remaining.append(resp.headers["X-Ratelimit-Remaining"])
        assert remaining == ["2", "1", "0"]
        async with http.get("/v2/account") as resp:
            now = time.time()
            assert resp.status == 429
            assert await resp.json() == {"code": 42910000, "message": "rate limit exceeded"}
            assert resp.headers["X-Ratelimit-Remaining"] == "0"
            assert now < int(resp.headers["X-Ratelimit-Reset"]) <= now + 61
            assert "Retry-After" not in resp.headers


async def test_auth_bodies(http: aiohttp.ClientSession, fake: FakeAlpaca) -> None:
    async with aiohttp.ClientSession(base_url=fake.base_url) as bare:
        wrong = {"APCA-API-KEY-ID": "fake-key-id", "APCA-API-SECRET-KEY": "nope"}
        async with bare.get("/v2/account", headers=wrong) as resp:
            assert resp.status == 401
            assert await resp.json() == {"code": 40110000, "message": "request is not authorized"}
        misnamed = {"APCA_API_KEY_ID": "fake-key-id", "APCA-API-SECRET-KEY": "fake-secret"}
        for headers in ({}, misnamed):
            async with bare.post("/v2/orders", headers=headers, json=order_body("x")) as resp:
                assert resp.status == 403
                assert await resp.read() == b'{"message": "forbidden."}\n'
                assert "X-Ratelimit-Reset" in resp.headers
    assert fake.orders() == []


def test_serve_in_thread_from_sync_code() -> None:
    fake = FakeAlpaca(step_s=0.01)
    with fake.serve_in_thread() as url:
        assert url == fake.base_url
        fake.set_price("AAPL", Decimal("42.5"))
        body = json.dumps(order_body("sync")).encode()
        request = urllib.request.Request(f"{url}/v2/orders", data=body, headers=KEYS, method="POST")
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 200
        deadline = time.monotonic() + 5
        while status_of(fake, "sync") != "filled":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert fake.order_by_client_id("sync") is not None
        assert fake.signed_filled("AAPL") == 10
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/v2/clock", timeout=5)


async def test_module_entry_prints_its_url() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.devnet.fake_alpaca", "--port", "0", "--key-id", "k",
        "--secret", "s", "--fill-steps", "2", "--step-s", "0.01",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line.startswith("listening on http://127.0.0.1:") and line.endswith("\n")
        url = line.split()[-1]
        headers = {"APCA-API-KEY-ID": "k", "APCA-API-SECRET-KEY": "s"}
        async with aiohttp.ClientSession(base_url=url, headers=headers) as http:
            assert (await call(http, "GET", "/v2/clock"))[0] == 200
            _, order = await call(http, "POST", "/v2/orders", json=order_body("m"))
            deadline = time.monotonic() + 5
            while (await call(http, "GET", f"/v2/orders/{order['id']}"))[1]["status"] != "filled":
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 30) == 0
