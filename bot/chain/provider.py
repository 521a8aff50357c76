"""One RPC provider: its transport, circuit breaker, request rate and learned window cap."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bot.chain.lanes import Lane, RateLimiter
from bot.chain.transport import Transport
from bot.config import redact_url
from bot.core.ranges import SpanPolicy
from bot.core.retry import BreakerState, CircuitBreaker
from bot.errors import RpcError, TransientError

OnCall = Callable[[str, str, str], None]
"""``(provider, method, outcome)`` after every attempt; the provider is a redacted URL."""


class Provider:
    """One provider: its transport, breaker, request rate and learned ``eth_getLogs`` span."""

    def __init__(
        self,
        transport: Transport,
        *,
        breaker_failures: int,
        breaker_reset_s: float,
        requests_per_second: float,
        timeout_s: float,
        batch_blocks: int,
        on_call: OnCall,
    ) -> None:
        self.transport = transport
        self.name = redact_url(transport.url)
        self.breaker = CircuitBreaker(breaker_failures, breaker_reset_s, time.monotonic)
        self.span_policy = SpanPolicy(batch_blocks)
        self.chain_checked = False  # its eth_chainId was compared with the others'
        self.head: int | None = None  # its last eth_blockNumber answer (providers lag each other)
        self.head_at = 0.0
        self._limiter = RateLimiter(requests_per_second)
        self._timeout_s = timeout_s
        self._on_call = on_call

    @property
    def healthy(self) -> bool:
        return self.breaker.state is not BreakerState.OPEN

    async def send(self, method: str, params: list[Any], *, lane: Lane) -> Any:
        """One attempt (the breaker already acquired); records its outcome in the breaker."""
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
            self._on_call(self.name, method, "error")
            raise
        except TransientError:
            self.breaker.record_failure()
            self._on_call(self.name, method, "error")
            raise
        self.breaker.record_success()
        self._on_call(self.name, method, "ok")
        if method == "eth_blockNumber" and isinstance(result, str) and result.startswith("0x"):
            self.head, self.head_at = int(result, 16), time.monotonic()
        return result
