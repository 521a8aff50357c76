"""Socket stamps: each notification says when its frame was read off the socket, not when a
consumer took it from the queue (the live latency figures start from it)."""

from __future__ import annotations

import asyncio
import time

from bot.chain.subscription import LiveFeed, LiveHead, LiveLog
from bot.chain.ws import WsConnection
from bot.core.abi import ORDERBOOK_TOPICS
from bot.devnet.anvil import AnvilProcess
from bot.devnet.rpc import JsonRpcClient
from tests.support.history import wait_until


def mine(anvil: AnvilProcess, blocks: int) -> None:
    with JsonRpcClient(anvil.http_url) as rpc:
        rpc.call("anvil_mine", [hex(blocks)])


async def test_a_notification_is_stamped_when_read_not_when_taken(anvil: AnvilProcess) -> None:
    connection = await WsConnection.open(anvil.ws_url)
    try:
        await connection.subscribe("newHeads")
        before = time.monotonic()
        await asyncio.to_thread(mine, anvil, 3)
        await wait_until(
            lambda: connection.pending_notifications() == 3, timeout_s=10, what="3 heads queued"
        )
        queued_by = time.monotonic()
        notes = [await asyncio.wait_for(connection.next_notification(), 5) for _ in range(3)]
    finally:
        await connection.close()
    stamps = [note.received_at for note in notes]
    assert [int(note.result["number"], 16) for note in notes] == [1, 2, 3]
    assert all(before <= stamp <= queued_by for stamp in stamps), (before, stamps, queued_by)
    assert stamps == sorted(stamps)


async def test_answers_do_not_shift_the_stamps_of_notifications(anvil: AnvilProcess) -> None:
    """Responses are messages too: each message takes its own stamp, so a notification read
    after many answers still carries the time of its own frame."""
    connection = await WsConnection.open(anvil.ws_url)
    try:
        await connection.subscribe("newHeads")
        for _ in range(20):
            await connection.request("eth_blockNumber", [])
        before = time.monotonic()
        await asyncio.to_thread(mine, anvil, 1)
        await wait_until(
            lambda: connection.pending_notifications() == 1, timeout_s=10, what="a head queued"
        )
        queued_by = time.monotonic()
        for _ in range(20):  # answers read after the head: their stamps are not the head's
            await connection.request("eth_blockNumber", [])
        note = await asyncio.wait_for(connection.next_notification(), 5)
    finally:
        await connection.close()
    assert before <= note.received_at <= queued_by


async def test_the_live_feed_carries_the_socket_stamp(anvil: AnvilProcess) -> None:
    address = "0x" + "11" * 20  # no code: its logs subscription stays quiet, heads still come
    feed = await LiveFeed.open(anvil.ws_url, address, ORDERBOOK_TOPICS)
    try:
        before = time.monotonic()
        await asyncio.to_thread(mine, anvil, 2)
        await wait_until(lambda: feed.backlog() == 2, timeout_s=10, what="2 heads queued")
        queued_by = time.monotonic()
        messages = [await asyncio.wait_for(feed.next(), 5) for _ in range(2)]
    finally:
        await feed.close()
    assert all(isinstance(message, LiveHead) for message in messages)
    for message in messages:
        assert isinstance(message, LiveHead | LiveLog)
        assert before <= message.received_at <= queued_by
