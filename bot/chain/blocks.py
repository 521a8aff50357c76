"""Reading blocks from a provider: headers, a block's logs by hash, and ranged log windows with
the headers that vouch for them (SPEC §6, §7).

Rules these helpers enforce, so that no caller has to remember them:

- A header that is not there yet (``null``) is a passing fault: the provider lags.
- An answer that is not the documented shape (``MalformedAnswer``, a ``null`` from
  ``eth_getLogs{blockHash}``) is a passing fault too: retried with backoff here, then raised as
  :class:`UnusableAnswer` (a ``TransientError``), never as a traceback.
- ``unknown block`` for a hash: the header at that height is re-read by number from the same
  provider. Another hash there means the block left the chain (:class:`BlockReplaced`, carrying the
  canonical header); the same hash means the provider has not caught up: wait and ask again.
- A ranged window is read as: its end header first, then its logs, then its first header and
  every header of its recent part, linked by parent hash to the end header. The logs must name
  only blocks of that chain; a window whose reads disagree is :class:`ChainMoved` (retry it).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from loguru import logger

from bot.chain.endpoint import Endpoint, Lane, is_transient
from bot.chain.parse import MalformedAnswer, parse_head, parse_log
from bot.core.heads import Head
from bot.core.model import RawLog
from bot.core.ranges import Action, BlockRange, classify
from bot.core.retry import delay_s
from bot.errors import (
    BlockNotServed,
    BlockReplaced,
    ChainMoved,
    RpcError,
    TransientError,
    UnusableAnswer,
)

T = TypeVar("T")

HEADER_READS_IN_FLIGHT = 16  # a window's headers: enough to hide latency, few enough to be polite
ANSWER_TRIES = 6  # malformed answers and "not there yet" waits, before the caller's own retry
ANSWER_BACKOFF_BASE_S = 0.2
ANSWER_BACKOFF_MAX_S = 5.0


@dataclass(frozen=True, slots=True)
class LogFilter:
    address: str
    topics: tuple[str, ...]

    def params(self, **extra: Any) -> list[Any]:
        return [{"address": self.address, "topics": [list(self.topics)], **extra}]


@dataclass(frozen=True, slots=True)
class WindowRead:
    """One ranged window's logs and the canonical headers (oldest first) that vouch for them.

    ``headers`` (oldest first) holds the window's first and last header and every header from
    ``every_header_from`` on, linked by parent hash. ``named`` is the hash of each block the
    logs name (the same as ``headers`` where both have one)."""

    window: BlockRange
    logs: list[RawLog]
    headers: list[Head]
    named: dict[int, str]

    @property
    def first(self) -> Head:
        return self.headers[0]

    @property
    def last(self) -> Head:
        return self.headers[-1]


def range_error_retry(error: BaseException) -> bool:
    """Retry what the range planner would retry anyway; let range answers reach the planner."""
    if isinstance(error, RpcError):
        action = classify(str(error), code=error.code, http_status=error.http_status).action
        return action in (Action.WAIT, Action.RATE_LIMIT, Action.RETRY)
    return is_transient(error)


def _not_served(error: BaseException) -> bool:
    """An answer that says the provider does not have the block (``unknown block`` & co.)."""
    return (
        isinstance(error, RpcError)
        and error.http_status is None
        and (classify(str(error), code=error.code).action is Action.WAIT)
    )


async def _patiently(what: str, attempt: Callable[[], Awaitable[T]]) -> T:
    """Run ``attempt``; retry it with backoff while it raises :class:`UnusableAnswer` or
    :class:`BlockNotServed`, then let the last one go (a ``TransientError``: the caller's loop
    retries it, it never ends the process)."""
    tries = 0
    while True:
        tries += 1
        try:
            return await attempt()
        except (UnusableAnswer, BlockNotServed) as error:
            if tries >= ANSWER_TRIES:
                raise
            wait = delay_s(tries, base_s=ANSWER_BACKOFF_BASE_S, max_s=ANSWER_BACKOFF_MAX_S)
            logger.warning("{}: {}; asking again in {:.2f} s", what, error, wait)
            await asyncio.sleep(wait)


async def get_header_or_none(
    endpoint: Endpoint, number: int, *, lane: Lane = Lane.LIVE, min_head: int | None = None
) -> Head | None:
    """The canonical header at ``number``, or None when the provider has no block there.
    ``min_head``: only a provider whose own head is at least this may answer (SPEC §7)."""

    async def attempt() -> Head | None:
        answer = await endpoint.call(
            "eth_getBlockByNumber", [hex(number), False], lane=lane, min_head=min_head
        )
        if answer is None:
            return None
        try:
            return parse_head(answer)
        except MalformedAnswer as error:
            raise UnusableAnswer(f"header {number}: {error}") from None

    return await _patiently(f"eth_getBlockByNumber {number}", attempt)


async def get_header(
    endpoint: Endpoint, number: int, *, lane: Lane = Lane.LIVE, min_head: int | None = None
) -> Head:
    """The canonical header at ``number``; a block not there yet is a ``TransientError``."""
    header = await get_header_or_none(endpoint, number, lane=lane, min_head=min_head)
    if header is None:
        raise TransientError(f"block {number} is not available yet")
    return header


async def get_logs_by_hash(
    endpoint: Endpoint,
    log_filter: LogFilter,
    block_hash: str,
    *,
    number: int | None = None,
    lane: Lane = Lane.LIVE,
) -> list[RawLog]:
    """The filter's logs of the block ``block_hash`` (at height ``number``, when known, so that
    an ``unknown block`` answer can be told apart: :class:`BlockReplaced` or a wait)."""

    async def attempt() -> list[RawLog]:
        try:
            answer = await endpoint.call(
                "eth_getLogs",
                log_filter.params(blockHash=block_hash),
                lane=lane,
                retry_if=lambda error: is_transient(error) and not _not_served(error),
            )
        except RpcError as error:
            if not _not_served(error):
                raise
            canonical = None
            if number is not None:  # re-read the header at that height from the same provider
                canonical = await get_header_or_none(endpoint, number, lane=lane)
            if canonical is not None and canonical.hash != block_hash:
                raise BlockReplaced(
                    f"block {number} {block_hash[:10]} is no longer canonical "
                    f"({canonical.hash[:10]} is)",
                    canonical=canonical,
                ) from None
            raise BlockNotServed(
                f"eth_getLogs of block {number} {block_hash[:10]} answered '{error}'"
            ) from None
        if not isinstance(answer, list):
            raise UnusableAnswer(f"eth_getLogs of block {block_hash[:10]} answered {answer!r}")
        try:
            logs = [parse_log(item) for item in answer]
        except MalformedAnswer as error:
            raise UnusableAnswer(f"eth_getLogs of block {block_hash[:10]}: {error}") from None
        if any(log.block_hash != block_hash for log in logs):
            raise UnusableAnswer(f"eth_getLogs of block {block_hash[:10]} named another block")
        return logs

    return await _patiently(f"eth_getLogs of block {block_hash[:10]}", attempt)


async def get_logs_range(
    endpoint: Endpoint,
    log_filter: LogFilter,
    window: BlockRange,
    *,
    lane: Lane = Lane.BACKFILL,
    min_head: int | None = None,
) -> list[RawLog]:
    """One ranged ``eth_getLogs``. Range answers (too many results, a cap, a suggestion) reach
    the caller as ``RpcError`` for the planner; a malformed answer is :class:`UnusableAnswer`."""
    answer = await endpoint.call(
        "eth_getLogs",
        log_filter.params(fromBlock=hex(window.start), toBlock=hex(window.end)),
        lane=lane,
        retry_if=range_error_retry,
        max_tries=1_000_000,  # a window is never given up: the breaker paces the retries
        min_head=min_head,
    )
    if not isinstance(answer, list):
        raise UnusableAnswer(f"eth_getLogs {window} answered {str(answer)[:80]}")
    try:
        return [parse_log(item) for item in answer]
    except MalformedAnswer as error:
        raise UnusableAnswer(f"eth_getLogs {window}: {error}") from None


async def _headers(
    endpoint: Endpoint, first: int, last: int, min_head: int | None = None
) -> list[Head]:
    """The headers ``first..last`` by number, a few requests at a time (oldest first)."""
    found: list[Head] = []
    for start in range(first, last + 1, HEADER_READS_IN_FLIGHT):
        numbers = range(start, min(last, start + HEADER_READS_IN_FLIGHT - 1) + 1)
        found.extend(
            await asyncio.gather(
                *(get_header(endpoint, n, lane=Lane.BACKFILL, min_head=min_head) for n in numbers)
            )
        )
    return found


async def read_window(
    endpoint: Endpoint,
    log_filter: LogFilter,
    window: BlockRange,
    *,
    every_header_from: int,
    min_head: int | None = None,
) -> WindowRead:
    """Read ``window``: its end header before its logs (a provider that lags answers ``null``
    there and is waited for), then its first header and every header from
    ``every_header_from`` on, which must link by parent hash up to the end header; the logs
    must name the blocks of that chain at those heights.

    ``min_head`` (SPEC §7): every read of the window goes only to a provider whose own head is
    at least this (``window end + confirmations + 2``), so a lagging fallback never answers for
    blocks it has not seen; reads that disagree (two providers' views) are read again."""
    last = await get_header(endpoint, window.end, lane=Lane.BACKFILL, min_head=min_head)
    logs = await get_logs_range(endpoint, log_filter, window, min_head=min_head)
    named: dict[int, str] = {}
    for log in logs:
        if named.setdefault(log.block_number, log.block_hash) != log.block_hash:
            raise ChainMoved(f"eth_getLogs {window} named two hashes for block {log.block_number}")
    linked_from = max(window.start, every_header_from)
    chain = [*await _headers(endpoint, linked_from, window.end - 1, min_head), last]
    if linked_from > window.start:
        first = await get_header(endpoint, window.start, lane=Lane.BACKFILL, min_head=min_head)
        chain.insert(0, first)
    for below, above in itertools.pairwise(chain):
        if above.number == below.number + 1 and above.parent_hash != below.hash:
            raise ChainMoved(f"block {above.number} does not link to block {below.number}")
    stray = [h.number for h in chain if named.get(h.number, h.hash) != h.hash]
    if stray:
        raise ChainMoved(f"eth_getLogs {window} named blocks of another fork: {stray[:5]}")
    return WindowRead(window, logs, chain, named)
