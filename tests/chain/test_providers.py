"""Several providers behind one Endpoint (SPEC §7): each its own breaker and window cap; calls go
to the first healthy one and come back to the primary; every provider serves the same chain.
Real anvil behind loopback proxies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from bot.chain.endpoint import Endpoint
from bot.chain.transport import HttpTransport
from bot.core.ranges import Action, BlockRange, Classified
from bot.core.retry import BreakerState
from bot.devnet.anvil import AnvilProcess
from bot.devnet.rpc import JsonRpcClient
from bot.errors import ProviderMismatchError, ProvidersBehind, TransientError
from tests.support.faults import Faults, FaultyHttpProxy

QUIET = Faults(seed=0, error_rate=0, drop_rate=0)


@pytest.fixture
async def proxies(anvil: AnvilProcess) -> AsyncIterator[tuple[FaultyHttpProxy, FaultyHttpProxy]]:
    primary = await FaultyHttpProxy(anvil.http_url, QUIET).start()
    fallback = await FaultyHttpProxy(anvil.http_url, QUIET).start()
    yield primary, fallback
    await primary.stop()
    await fallback.stop()


def _endpoint(
    primary: FaultyHttpProxy, fallback: FaultyHttpProxy, calls: list[tuple[str, str, str]]
) -> Endpoint:
    return Endpoint(
        HttpTransport(primary.url),
        fallbacks=[HttpTransport(fallback.url + "/key-in-path")],
        breaker_failures=2,
        breaker_reset_s=0.3,
        max_backoff_s=0.2,
        on_provider_call=lambda provider, method, outcome: calls.append(
            (provider, method, outcome)
        ),
    )


async def test_calls_move_to_the_fallback_and_come_back_to_the_primary(
    proxies: tuple[FaultyHttpProxy, FaultyHttpProxy],
) -> None:
    primary, fallback = proxies
    calls: list[tuple[str, str, str]] = []
    endpoint = _endpoint(primary, fallback, calls)
    try:
        assert await endpoint.check_chain_ids() == 31337
        await endpoint.call("eth_blockNumber", [])
        assert endpoint.provider_name == primary.url
        assert fallback.served["eth_blockNumber"] == 0

        primary.down = True
        for _ in range(6):  # every call is answered, none waits for the primary
            await endpoint.call("eth_blockNumber", [])
        assert endpoint.provider_name == f"{fallback.url}/<redacted>"
        assert endpoint.providers[0].breaker.state is not BreakerState.CLOSED
        assert fallback.served["eth_blockNumber"] >= 6

        primary.down = False
        served_before = primary.served["eth_blockNumber"]

        # polled with a deadline: the primary's breaker half-opens 0.3 s after its last failure
        deadline = time.monotonic() + 10
        while endpoint.provider_name != primary.url and time.monotonic() < deadline:
            await endpoint.call("eth_blockNumber", [])
            await asyncio.sleep(0.01)
        assert endpoint.provider_name == primary.url
        assert primary.served["eth_blockNumber"] > served_before
    finally:
        await endpoint.close()
    providers = {provider for provider, _method, _outcome in calls}
    assert providers == {primary.url, f"{fallback.url}/<redacted>"}  # keys never in metrics
    assert (primary.url, "eth_blockNumber", "error") in calls


async def test_every_provider_must_serve_the_same_chain(
    proxies: tuple[FaultyHttpProxy, FaultyHttpProxy],
) -> None:
    primary, fallback = proxies
    fallback.chain_id = "0x1"
    endpoint = _endpoint(primary, fallback, [])
    try:
        with pytest.raises(ProviderMismatchError, match="chain id 1"):
            await endpoint.check_chain_ids()
    finally:
        await endpoint.close()


async def test_a_fallback_down_at_start_is_checked_before_it_serves(
    proxies: tuple[FaultyHttpProxy, FaultyHttpProxy],
) -> None:
    primary, fallback = proxies
    fallback.down = True
    endpoint = _endpoint(primary, fallback, [])
    try:
        assert await endpoint.check_chain_ids() == 31337  # the primary answered
        fallback.down = False
        fallback.chain_id = "0x1"  # it comes up serving another chain
        primary.down = True
        with pytest.raises(ProviderMismatchError):
            for _ in range(10):
                await endpoint.call("eth_blockNumber", [])
    finally:
        await endpoint.close()


async def test_no_provider_answering_at_start_is_transient(
    proxies: tuple[FaultyHttpProxy, FaultyHttpProxy],
) -> None:
    primary, fallback = proxies
    primary.down = fallback.down = True
    endpoint = _endpoint(primary, fallback, [])
    try:
        with pytest.raises(TransientError):
            await endpoint.check_chain_ids()
    finally:
        await endpoint.close()


async def test_each_provider_learns_its_own_window_cap(
    proxies: tuple[FaultyHttpProxy, FaultyHttpProxy],
) -> None:
    primary, fallback = proxies
    endpoint = _endpoint(primary, fallback, [])
    try:
        policy = endpoint.span_policy  # what the backfill holds: the one of the serving provider
        capped = policy.on_failure(BlockRange(0, 999), Classified(Action.CAP, max_span_blocks=100))
        assert capped.retry == BlockRange(0, 99)
        assert policy.limit() == 100
        primary.down = True
        for _ in range(3):
            await endpoint.call("eth_blockNumber", [])
        assert endpoint.current is endpoint.providers[1]
        assert policy.limit() == 1000  # the fallback has not taught us any cap
        assert endpoint.providers[0].span_policy.limit() == 100
    finally:
        await endpoint.close()


async def test_a_window_goes_only_to_a_provider_that_has_its_blocks(
    anvil: AnvilProcess, proxies: tuple[FaultyHttpProxy, FaultyHttpProxy]
) -> None:
    """SPEC §7: a provider whose own head is below ``min_head`` never serves the call; while
    none has the block the call waits (ProvidersBehind is transient)."""
    primary, fallback = proxies
    for _ in range(10):
        anvil_rpc_mine(anvil)
    fallback.lag_blocks = 5
    endpoint = _endpoint(primary, fallback, [])
    try:
        head = int(await endpoint.call("eth_blockNumber", []), 16)
        assert head >= 10
        primary.down = True  # only the lagging fallback is left
        with pytest.raises(ProvidersBehind, match=f"no provider has block {head}"):
            await endpoint.call(
                "eth_getBlockByNumber", [hex(head), False], min_head=head, max_tries=4
            )
        assert fallback.served["eth_getBlockByNumber"] == 0
        # a block the fallback has: it serves it
        block = await endpoint.call(
            "eth_getBlockByNumber", [hex(head - 5), False], min_head=head - 5
        )
        assert int(block["number"], 16) == head - 5
        assert fallback.served["eth_getBlockByNumber"] == 1
        # the fallback catches up: the waiting call goes through
        waiting = asyncio.create_task(
            # as the backfill does: a window is never given up, the wait is paced by backoff
            endpoint.call(
                "eth_getBlockByNumber", [hex(head), False], min_head=head, max_tries=1_000
            )
        )
        fallback.lag_blocks = 0
        block = await asyncio.wait_for(waiting, 20)
        assert int(block["number"], 16) == head
    finally:
        await endpoint.close()


def anvil_rpc_mine(anvil: AnvilProcess) -> None:
    with JsonRpcClient(anvil.http_url) as rpc:
        rpc.call("evm_mine", [])


async def test_a_pinned_endpoint_never_leaves_its_provider(
    proxies: tuple[FaultyHttpProxy, FaultyHttpProxy],
) -> None:
    primary, fallback = proxies
    endpoint = _endpoint(primary, fallback, [])
    try:
        await endpoint.call("eth_blockNumber", [])
        pinned = endpoint.pinned()
        assert pinned.provider_name == primary.url
        assert pinned.breaker is endpoint.breaker  # the same provider, not a copy
        primary.down = True
        with pytest.raises(TransientError):
            await pinned.call("eth_blockNumber", [], max_tries=3)
        assert fallback.served["eth_blockNumber"] == 0
        await endpoint.call("eth_blockNumber", [])  # the endpoint itself fails over
        assert fallback.served["eth_blockNumber"] == 1
    finally:
        await endpoint.close()
