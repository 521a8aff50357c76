"""The live feed: ``logs`` (orderbook address + our three topics) and ``newHeads`` subscriptions
on one WebSocket connection of their own (SPEC §1, §7).

Nothing else is sent on this socket (calls go through another connection), and its reader only
moves messages into memory, so a burst of notifications can never stall a call. A connection is
used once: after a drop the caller opens a new feed, re-subscribes and backfills the gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loguru import logger

from bot.chain.endpoint import OnCall, RpcRules, is_transient
from bot.chain.parse import parse_head, parse_log
from bot.chain.transport import ConnectionTransport
from bot.chain.ws import WsConnection
from bot.config import redact_url
from bot.core.heads import Head
from bot.core.model import RawLog
from bot.errors import MalformedAnswer


@dataclass(frozen=True, slots=True)
class LiveLog:
    log: RawLog
    received_at: float  # time.monotonic() when its frame was read off the socket (bot.chain.ws)


@dataclass(frozen=True, slots=True)
class LiveHead:
    head: Head
    received_at: float


@dataclass(frozen=True, slots=True)
class BadMessage:
    """A notification that does not parse: kept for the dead-letter, never dropped silently."""

    subscription: str
    payload: object
    reason: str


class LiveFeed:
    def __init__(
        self, connection: WsConnection, logs_id: str, heads_id: str, url: str = ""
    ) -> None:
        self.url = url or connection.url
        self._connection = connection
        self._logs_id = logs_id
        self._heads_id = heads_id

    @classmethod
    async def open(
        cls,
        url: str,
        address: str,
        topics: tuple[str, ...],
        *,
        rules: RpcRules | None = None,
        on_provider_call: OnCall | None = None,
    ) -> LiveFeed:
        """Connect and subscribe; returns once both subscriptions are confirmed.

        The ``eth_subscribe`` requests follow the same retry and breaker rules as every other
        call (an error answer such as -32603 or -32005 is retried with backoff); what is still
        failing after them is raised, and the connection is closed.
        """
        connection = await WsConnection.open(url)
        endpoint = (rules or RpcRules()).endpoint(
            ConnectionTransport(connection), on_provider_call=on_provider_call
        )

        def worth_retrying(error: BaseException) -> bool:
            # on a closed socket every retry would fail the same way: open a new one instead
            return is_transient(error) and not connection.closed

        async def subscribe(*params: Any) -> str:
            answer = await endpoint.call("eth_subscribe", list(params), retry_if=worth_retrying)
            if not isinstance(answer, str):
                raise MalformedAnswer(f"eth_subscribe answered {answer!r}")
            return answer

        try:
            logs_id = await subscribe("logs", {"address": address, "topics": [list(topics)]})
            heads_id = await subscribe("newHeads")
        except BaseException:
            await connection.close()
            raise
        logger.info(
            "subscriptions confirmed on {}: logs {}, newHeads {}",
            redact_url(url),
            logs_id,
            heads_id,
        )
        return cls(connection, logs_id, heads_id, url)

    @property
    def closed(self) -> bool:
        return self._connection.closed

    def backlog(self) -> int:
        return self._connection.pending_notifications()

    async def next(self) -> LiveLog | LiveHead | BadMessage:
        """The next message; raises :class:`~bot.errors.ConnectionLost` once the socket is gone."""
        while True:
            note = await self._connection.next_notification()
            try:
                if note.subscription == self._logs_id:
                    return LiveLog(parse_log(note.result), note.received_at)
                if note.subscription == self._heads_id:
                    return LiveHead(parse_head(note.result), note.received_at)
            except (MalformedAnswer, ValueError, TypeError) as exc:
                return BadMessage(note.subscription, note.result, str(exc))
            logger.debug("notification for unknown subscription {}", note.subscription)

    async def close(self) -> None:
        await self._connection.close()
