"""The network-and-CPU half of processing one event, done before the write transaction opens.

Owner check first (cheap, from the ABI head); only our events are fully decoded, get their
AfterClear (queue, then receipt) and token metadata (database cache, then chain), and are
converted. Nothing here touches the accumulator, so a failure only marks the event failed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import aiosqlite
import backoff
from loguru import logger

from bot.chain.reader import ChainReader
from bot.core.abi import AfterClearEvent, ClearEvent, UndecodableLog, decode, order_owners
from bot.core.conversion import Conversion, MissingTokenInfoError, convert, find_after_clear
from bot.core.model import RawLog, TokenInfo
from bot.core.retry import expo_with_retry_after
from bot.core.tokens import SymbolRules
from bot.errors import BotError, EventProcessingError, TransientError
from bot.store import ledger, queue
from bot.store.queue import QueuedEvent

T = TypeVar("T")
_MAX_TOKENS_PER_EVENT = 8  # a clear with both sides ours names 4 tokens at most


@dataclass(frozen=True, slots=True)
class Prepared:
    """One event ready to apply: not ours, converted, or failed (with whose it was)."""

    event: QueuedEvent
    ours: bool | None  # None: the owner could not be read
    conversion: Conversion | None = None
    failure: str | None = None

    @property
    def pauses(self) -> bool:
        """A failure of ours, or of unknown owner, pauses new executions (SPEC §8)."""
        return self.failure is not None and self.ours is not False


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff for transient RPC faults before an event is marked failed."""

    max_tries: int = 5
    base_s: float = 0.25
    max_s: float = 10.0


class Preparer:
    def __init__(
        self,
        conn: aiosqlite.Connection,
        *,
        order_owner: str,
        chain: ChainReader,
        rules: SymbolRules,
        tokens: dict[str, TokenInfo],
        retry: RetryPolicy,
    ) -> None:
        self._conn = conn
        self._owner = order_owner.lower()
        self._order_owner = order_owner
        self._chain = chain
        self._rules = rules
        self._tokens = tokens
        self._retry = retry

    async def prepare(self, event: QueuedEvent) -> Prepared:
        try:
            owners = order_owners(event.raw)
        except UndecodableLog as exc:
            return Prepared(event, None, failure=f"owner unreadable: {exc}")
        if not any(owner.lower() == self._owner for owner in owners):
            return Prepared(event, False)
        try:
            return Prepared(event, True, conversion=await self._convert(event))
        except TransientError as exc:
            reason = f"transient error after {self._retry.max_tries} tries: {exc}"
            return Prepared(event, True, failure=reason)
        except BotError as exc:
            return Prepared(event, True, failure=str(exc))
        except Exception as exc:  # a bug must not drop the event: fail it, loudly
            logger.exception("unexpected error preparing event {}", event.id)
            return Prepared(event, True, failure=f"{type(exc).__name__}: {exc}")

    async def _convert(self, event: QueuedEvent) -> Conversion:
        raw = event.raw
        decoded = decode(raw)
        after_clear: AfterClearEvent | None = None
        if isinstance(decoded, ClearEvent):
            after_clear = await self._after_clear(raw)
        for _ in range(_MAX_TOKENS_PER_EVENT):
            try:
                return convert(
                    raw,
                    decoded,
                    owner=self._order_owner,
                    after_clear=after_clear,
                    tokens=self._tokens,
                    rules=self._rules,
                    inclusion=event.inclusion,
                )
            except MissingTokenInfoError as missing:
                await self._fetch_token(missing.address)
        raise EventProcessingError(f"event {event.id}: token metadata still missing")

    async def _after_clear(self, clear: RawLog) -> AfterClearEvent:
        found = find_after_clear(clear, await queue.same_tx_logs(self._conn, clear.tx_hash))
        if found is None:
            receipt = await self._with_retry(self._chain.receipt_logs, clear.tx_hash)
            found = find_after_clear(clear, receipt)
        if found is None:
            raise EventProcessingError(
                f"ClearV2 tx={clear.tx_hash} log_index={clear.log_index}: its AfterClear is "
                "missing from the queue and from the transaction receipt"
            )
        decoded = decode(found)
        if not isinstance(decoded, AfterClearEvent):  # pragma: no cover - find_after_clear checks
            raise EventProcessingError(f"log {found.log_index} of {clear.tx_hash} is no AfterClear")
        return decoded

    async def _fetch_token(self, address: str) -> None:
        try:
            info = await self._with_retry(self._chain.token_info, address)
        except TransientError:
            raise
        except BotError as exc:
            raise EventProcessingError(f"unknown token {address}: {exc}") from exc
        if info.address.lower() != address.lower():
            raise EventProcessingError(f"token_info({address}) answered for {info.address}")
        info = TokenInfo(address, info.symbol, info.decimals)
        await ledger.save_token(self._conn, info)
        self._tokens[address] = info
        logger.info("token {} is {} ({} decimals)", address, info.symbol, info.decimals)

    async def _with_retry(self, call: Callable[[str], Awaitable[T]], arg: str) -> T:
        retrying = backoff.on_exception(
            expo_with_retry_after,
            TransientError,
            max_tries=self._retry.max_tries,
            jitter=None,
            base_s=self._retry.base_s,
            max_s=self._retry.max_s,
        )(call)
        result: T = await retrying(arg)
        return result
