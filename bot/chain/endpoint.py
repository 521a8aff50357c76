"""One RPC provider: retries with jittered backoff, a circuit breaker, an optional request rate,
and two lanes so that live requests never queue behind backfill requests.

Whether an error is worth retrying is the caller's decision (``retry_if``): ``eth_getLogs``
answers such as "too many results" are not failures of the endpoint but instructions to the
range planner, which must see them at once.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from enum import IntEnum
from typing import Any

import backoff
from loguru import logger

from bot.chain.transport import Transport
from bot.chain.ws import RpcError
from bot.config import redact_url
from bot.core.ranges import Action, classify
from bot.core.retry import CircuitBreaker, expo_with_retry_after
from bot.errors import TransientError


class Lane(IntEnum):
    """Lower goes first."""

    LIVE = 0
    BACKFILL = 1


def is_transient(error: BaseException) -> bool:
    """The default retry rule: network faults, rate limits, 5xx, and node-side hiccups."""
    if isinstance(error, RpcError):
        if error.http_status is not None:
            return error.http_status == 429 or error.http_status >= 500
        action = classify(str(error), code=error.code).action
        if action in (Action.RATE_LIMIT, Action.WAIT):
            return True
        # RETRY is also classify's answer for messages it does not know ("execution reverted"):
        # only retry those that say they are passing
        return action is Action.RETRY and _looks_transient(str(error))
    return isinstance(error, TransientError)


def _looks_transient(message: str) -> bool:
    lowered = message.lower()
    return any(
        word in lowered
        for word in ("rate", "limit", "internal", "timeout", "temporar", "unavailable", "busy")
    )


class RateLimiter:
    """At most ``per_second`` requests a second (0: unlimited), live lane served first."""

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = 1.0 / per_second if per_second > 0 else 0.0
        self._clock = clock
        self._next_slot = 0.0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._wakeup: asyncio.TimerHandle | None = None

    async def acquire(self, lane: Lane) -> None:
        if self._interval == 0:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (int(lane), next(self._seq), future))
        self._serve()
        await future

    def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiters:
            now = self._clock()
            if now < self._next_slot:
                if self._wakeup is None:
                    self._wakeup = loop.call_later(self._next_slot - now, self._woken)
                return
            _lane, _seq, future = heapq.heappop(self._waiters)
            if future.done():
                continue
            future.set_result(None)
            self._next_slot = max(now, self._next_slot) + self._interval

    def _woken(self) -> None:
        self._wakeup = None
        self._serve()


class Endpoint:
    def __init__(
        self,
        transport: Transport,
        *,
        breaker_failures: int = 5,
        breaker_reset_s: float = 10.0,
        requests_per_second: float = 0.0,
        max_tries: int = 8,
        max_backoff_s: float = 10.0,
        timeout_s: float = 30.0,
        on_call: Callable[[str, str], None] | None = None,
    ) -> None:
        self.transport = transport
        self.breaker = CircuitBreaker(breaker_failures, breaker_reset_s, time.monotonic)
        self._limiter = RateLimiter(requests_per_second)
        self._max_tries = max_tries
        self._max_backoff_s = max_backoff_s
        self._timeout_s = timeout_s
        self._on_call = on_call or (lambda method, outcome: None)

    @property
    def url(self) -> str:
        return self.transport.url

    async def call(
        self,
        method: str,
        params: list[Any],
        *,
        lane: Lane = Lane.LIVE,
        retry_if: Callable[[BaseException], bool] = is_transient,
        max_tries: int | None = None,
    ) -> Any:
        """Send one call; retry what ``retry_if`` accepts, raise anything else at once."""

        def give_up(error: Exception) -> bool:
            return not retry_if(error)

        def log_retry(details: Any) -> None:
            logger.warning(
                "{} to {} failed ({}); retry {} in {:.2f} s",
                method,
                redact_url(self.url),
                details.get("exception"),
                details["tries"],
                details["wait"],
            )

        @backoff.on_exception(
            lambda: expo_with_retry_after(base_s=0.2, max_s=self._max_backoff_s),
            Exception,
            max_tries=max_tries or self._max_tries,
            giveup=give_up,
            jitter=None,
            on_backoff=log_retry,
            raise_on_giveup=True,
        )
        async def attempt() -> Any:
            return await self.call_once(method, params, lane=lane)

        return await attempt()

    async def call_once(self, method: str, params: list[Any], *, lane: Lane = Lane.LIVE) -> Any:
        """One attempt through the breaker and the rate limit, no retry."""
        # the breaker opens and half-opens with time alone: there is no event to wait on
        while not self.breaker.acquire():  # noqa: ASYNC110
            await asyncio.sleep(min(1.0, max(0.05, self.breaker.wait_s())))
        await self._limiter.acquire(lane)
        try:
            result = await self.transport.call(method, params, timeout_s=self._timeout_s)
        except RpcError as error:
            endpoint_fault = error.http_status is not None and (
                error.http_status >= 500 or error.http_status == 429
            )
            if endpoint_fault:
                self.breaker.record_failure()
            else:
                self.breaker.record_success()  # the node answered: it is up
            self._on_call(method, "error")
            raise
        except TransientError:
            self.breaker.record_failure()
            self._on_call(method, "error")
            raise
        self.breaker.record_success()
        self._on_call(method, "ok")
        return result

    async def close(self) -> None:
        await self.transport.close()
