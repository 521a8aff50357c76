"""``WsConnection`` against a real anvil: answers matched by id, subscription notifications,
a dropped socket failing waiting calls, and no deadlock behind a deep notification backlog."""

from __future__ import annotations

import asyncio

import pytest

from bot.chain.ws import WsConnection
from bot.devnet.anvil import AnvilProcess
from bot.devnet.rpc import JsonRpcClient
from bot.errors import ConnectionLost, RpcError
from tests.support.history import wait_until
from tests.support.proxies import TcpProxy


def mine(anvil: AnvilProcess, blocks: int) -> None:
    with JsonRpcClient(anvil.http_url) as rpc:
        rpc.call("anvil_mine", [hex(blocks)])


async def test_concurrent_requests_get_their_own_answers(anvil: AnvilProcess) -> None:
    await asyncio.to_thread(mine, anvil, 30)
    connection = await WsConnection.open(anvil.ws_url)
    try:
        blocks = await asyncio.gather(
            *(connection.request("eth_getBlockByNumber", [hex(n), False]) for n in range(31))
        )
        chain_id, number = await asyncio.gather(
            connection.request("eth_chainId", []), connection.request("eth_blockNumber", [])
        )
        with pytest.raises(RpcError) as raised:
            await connection.request("eth_noSuchMethod", [])
        assert raised.value.code is not None
        assert await connection.request("eth_blockNumber", []) == number  # still usable
    finally:
        await connection.close()
    assert [int(block["number"], 16) for block in blocks] == list(range(31))
    assert (chain_id, number) == ("0x7a69", hex(30))


async def test_subscription_notifications_arrive_in_order(anvil: AnvilProcess) -> None:
    connection = await WsConnection.open(anvil.ws_url)
    try:
        subscription = await connection.subscribe("newHeads")
        await asyncio.to_thread(mine, anvil, 3)
        notes = [await asyncio.wait_for(connection.next_notification(), 5) for _ in range(3)]
    finally:
        await connection.close()
    assert {note.subscription for note in notes} == {subscription}
    assert [int(note.result["number"], 16) for note in notes] == [1, 2, 3]


async def test_a_dropped_socket_fails_waiting_calls_and_ends_the_stream(
    anvil: AnvilProcess,
) -> None:
    assert anvil.port is not None
    proxy = await TcpProxy("127.0.0.1", anvil.port).start()
    connection = await WsConnection.open(proxy.ws_url)
    try:
        await connection.subscribe("newHeads")
        proxy.silent = True  # the request below reaches nobody: it waits for an answer
        waiting = asyncio.create_task(connection.request("eth_blockNumber", [], timeout_s=30))
        reader = asyncio.create_task(connection.next_notification())
        done, _ = await asyncio.wait({waiting, reader}, timeout=0.2)
        assert not done
        proxy.cut()
        with pytest.raises(ConnectionLost):
            await asyncio.wait_for(waiting, 5)
        with pytest.raises(ConnectionLost):
            await asyncio.wait_for(reader, 5)
        assert connection.closed
        with pytest.raises(ConnectionLost):  # the stream stays ended for later readers too
            await asyncio.wait_for(connection.next_notification(), 5)
        with pytest.raises(ConnectionLost):
            await connection.request("eth_blockNumber", [])
    finally:
        await connection.close()
        await proxy.stop()


async def test_a_deep_notification_backlog_does_not_block_a_call(anvil: AnvilProcess) -> None:
    """web3 8 deadlocks here (a full 500-message buffer stops its reader): NOTES.md."""
    connection = await WsConnection.open(anvil.ws_url)
    try:
        await connection.subscribe("newHeads")
        await asyncio.to_thread(mine, anvil, 1000)
        await wait_until(
            lambda: connection.pending_notifications() == 1000,
            timeout_s=20,
            what="1,000 unread notifications",
        )
        # nobody has read a single notification, and a call on the same socket still answers
        assert await connection.request("eth_blockNumber", [], timeout_s=5) == hex(1000)
        numbers = [
            int((await connection.next_notification()).result["number"], 16) for _ in range(1000)
        ]
    finally:
        await connection.close()
    assert numbers == list(range(1, 1001))
