"""RPC providers: retries with jittered backoff, a circuit breaker and a learned window cap per
provider, an optional request rate, failover between providers, and two lanes so that live
requests never queue behind backfill requests (SPEC §6, §7).

An :class:`Endpoint` holds one provider or several (``chain.fallback_urls``). A call goes to the
first provider in order whose breaker is closed (or half-open for its one trial), so traffic
moves to a fallback while the primary's breaker is open and comes back to the primary once a
trial call succeeds. A call that fails on one provider is retried at once on the next healthy
one, else after a backoff on the same one.

Whether an error is worth retrying is the caller's decision (``retry_if``): ``eth_getLogs``
answers such as "too many results" are not failures of the endpoint but instructions to the
range planner, which must see them at once.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from loguru import logger

from bot.chain.lanes import Lane, RateLimiter
from bot.chain.provider import OnCall, Provider
from bot.chain.transport import Transport
from bot.core.ranges import Action, BlockRange, Classified, Decision, SpanPolicy, classify
from bot.core.retry import expo_with_retry_after
from bot.errors import (
    ConnectionLost,
    MalformedAnswer,
    ProviderMismatchError,
    ProvidersBehind,
    RpcError,
    TransientError,
)

HEAD_FRESH_S = 0.5
"""How long a provider's last ``eth_blockNumber`` answer counts as its head for ``min_head``."""

__all__ = [
    "CurrentSpanPolicy",
    "Endpoint",
    "Lane",
    "OnCall",
    "Provider",
    "RateLimiter",
    "RpcRules",
    "is_transient",
]


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


class Endpoint:
    """One provider, or several in order of preference (``fallbacks``)."""

    def __init__(
        self,
        transport: Transport,
        *,
        fallbacks: Sequence[Transport] = (),
        breaker_failures: int = 5,
        breaker_reset_s: float = 10.0,
        requests_per_second: float = 0.0,
        max_tries: int = 8,
        max_backoff_s: float = 10.0,
        timeout_s: float = 30.0,
        batch_blocks: int = 1000,
        on_call: Callable[[str, str], None] | None = None,
        on_provider_call: OnCall | None = None,
    ) -> None:
        plain = on_call or (lambda method, outcome: None)
        labelled = on_provider_call or (lambda provider, method, outcome: plain(method, outcome))
        self.providers = [
            Provider(
                t,
                breaker_failures=breaker_failures,
                breaker_reset_s=breaker_reset_s,
                requests_per_second=requests_per_second,
                timeout_s=timeout_s,
                batch_blocks=batch_blocks,
                on_call=labelled,
            )
            for t in (transport, *fallbacks)
        ]
        self.transport = transport
        self.breaker = self.providers[0].breaker
        self.current = self.providers[0]  # the provider that answered last
        self.span_policy: SpanPolicy = CurrentSpanPolicy(self, batch_blocks)
        self._max_tries = max_tries
        self._max_backoff_s = max_backoff_s
        self.chain_id: int | None = None  # once check_chain_ids has run
        self._owns_transports = True

    def pinned(self) -> Endpoint:
        """An endpoint that sends only to the provider in use now, sharing its breaker, rate
        and span policy: for a sequence of reads whose hashes must all come from one provider
        (SPEC §7: a reorg is declared only from hashes one provider gave)."""
        view = copy.copy(self)
        view.providers = [self.current]
        view.span_policy = CurrentSpanPolicy(view, self.current.span_policy.target)
        view._owns_transports = False  # closing the view leaves the provider open
        return view

    @property
    def url(self) -> str:
        """The URL of the provider in use (redact it before logging)."""
        return self.current.transport.url

    @property
    def provider_name(self) -> str:
        """The provider in use, as a redacted URL (for logs, metrics and ``status``)."""
        return self.current.name

    async def call(
        self,
        method: str,
        params: list[Any],
        *,
        lane: Lane = Lane.LIVE,
        retry_if: Callable[[BaseException], bool] = is_transient,
        max_tries: int | None = None,
        min_head: int | None = None,
    ) -> Any:
        """Send one call; retry what ``retry_if`` accepts (on the next healthy provider at once,
        else after a backoff), raise anything else at once.

        ``min_head``: only a provider whose own ``eth_blockNumber`` is at least this may serve
        the call (SPEC §7: a window goes only to a provider that has its blocks, with
        ``min_head = window end + confirmations + 2``); while none has, the call waits
        (:class:`ProvidersBehind`, transient)."""
        limit = max_tries or self._max_tries
        waits = expo_with_retry_after(base_s=0.2, max_s=self._max_backoff_s)
        next(waits)
        failed: Provider | None = None
        tries = 0
        while True:
            tries += 1
            try:
                provider = await self._acquire(avoid=failed, min_head=min_head)
            except ProvidersBehind as behind:
                if not retry_if(behind) or tries >= limit:
                    raise
                await asyncio.sleep(waits.send(behind))
                continue
            try:
                result = await provider.send(method, params, lane=lane)
            except Exception as error:
                if isinstance(error, RpcError) and error.http_status is None:
                    # the node answered (e.g. "too many results"): it is the one in use, and
                    # what the answer teaches belongs to its span policy
                    self._use(provider)
                if not retry_if(error) or tries >= limit:
                    raise
                failed = provider
                switch = self._next_healthy(avoid=provider)
                wait = 0.0 if switch is not None else waits.send(error)
                logger.warning(
                    "{} to {} failed ({}); retry {} {}",
                    method,
                    provider.name,
                    error,
                    tries,
                    f"on {switch.name}" if switch is not None else f"in {wait:.2f} s",
                )
                if wait:
                    await asyncio.sleep(wait)
                continue
            self._use(provider)
            return result

    async def call_once(self, method: str, params: list[Any], *, lane: Lane = Lane.LIVE) -> Any:
        """One attempt through the breaker and the rate limit, no retry."""
        provider = await self._acquire(avoid=None, min_head=None)
        result = await provider.send(method, params, lane=lane)
        self._use(provider)
        return result

    async def check_chain_ids(self) -> int:
        """Ask every provider for its chain id once (one attempt each): every answer must be the
        same (else :class:`ProviderMismatchError`, exit 3). At least one must answer (else the
        error stands, for the caller to wait out); a provider that did not is checked before
        its first call."""
        answers: dict[str, int] = {}
        last_error: Exception | None = None
        for provider in self.providers:
            if not provider.breaker.acquire():
                continue
            try:
                answers[provider.name] = await self._chain_id_of(provider)
            except Exception as error:
                if not is_transient(error) and not isinstance(error, RpcError):
                    raise
                last_error = error
                continue
            provider.chain_checked = True
        if len(set(answers.values())) > 1:
            raise ProviderMismatchError(
                "the providers serve different chains: "
                + ", ".join(f"{name} chain id {cid}" for name, cid in answers.items())
                + "; every URL in chain.ws_url, chain.http_url and chain.fallback_urls must "
                "serve the same chain"
            )
        if not answers:
            raise last_error or ConnectionLost("no provider could be asked for its chain id")
        self.chain_id = next(iter(answers.values()))
        return self.chain_id

    async def _chain_id_of(self, provider: Provider) -> int:
        """``provider``'s chain id (its breaker already acquired)."""
        answer = await provider.send("eth_chainId", [], lane=Lane.LIVE)
        if not isinstance(answer, str) or not answer.startswith("0x"):
            raise MalformedAnswer(f"eth_chainId answered {answer!r}")
        return int(answer, 16)

    async def _checked(self, provider: Provider) -> bool:
        """Whether ``provider`` (its breaker acquired) may serve calls: a provider not yet
        compared with the chain id the others serve is compared now."""
        if provider.chain_checked or self.chain_id is None:
            return True
        try:
            chain_id = await self._chain_id_of(provider)
        except Exception as error:
            if not is_transient(error) and not isinstance(error, RpcError):
                raise
            return False
        if chain_id != self.chain_id:
            raise ProviderMismatchError(
                f"{provider.name} serves chain id {chain_id}, the other providers {self.chain_id}"
                "; every URL in chain.fallback_urls must serve the same chain"
            )
        provider.chain_checked = True
        return provider.breaker.acquire()

    def _use(self, provider: Provider) -> None:
        if provider is not self.current:
            logger.warning("RPC calls now go to {} (was {})", provider.name, self.current.name)
            self.current = provider

    def _next_healthy(self, *, avoid: Provider | None) -> Provider | None:
        return next((p for p in self.providers if p is not avoid and p.healthy), None)

    async def _acquire(self, *, avoid: Provider | None, min_head: int | None) -> Provider:
        """The first provider in order whose breaker lets a request through now (``avoid``, the
        one that just failed, last) and that has block ``min_head``, waiting while every
        breaker is open."""
        # the breakers open and half-open with time alone: there is no event to wait on
        while True:
            ordered = [p for p in self.providers if p is not avoid]
            if avoid is not None:
                ordered.append(avoid)
            behind: list[Provider] = []
            for provider in ordered:
                if min_head is not None and self._known_behind(provider, min_head):
                    behind.append(provider)  # asked a moment ago: no request spent on it
                    continue
                if not (provider.breaker.acquire() and await self._checked(provider)):
                    continue
                if min_head is not None and (provider.head is None or provider.head < min_head):
                    # spends the acquired permission (and resolves a half-open trial)
                    if not await self._ask_head(provider):
                        continue
                    if provider.head is None or provider.head < min_head:
                        behind.append(provider)
                        continue
                    if not provider.breaker.acquire():
                        continue
                return provider
            if behind:
                raise ProvidersBehind(
                    f"no provider has block {min_head} yet ("
                    + ", ".join(f"{p.name} at {p.head}" for p in behind)
                    + ")"
                )
            wait = min(p.breaker.wait_s() for p in self.providers)
            await asyncio.sleep(min(1.0, max(0.05, wait)))

    @staticmethod
    def _known_behind(provider: Provider, number: int) -> bool:
        fresh = time.monotonic() - provider.head_at < HEAD_FRESH_S
        return fresh and provider.head is not None and provider.head < number

    @staticmethod
    async def _ask_head(provider: Provider) -> bool:
        """Ask ``provider`` (its breaker acquired) for its head; False when it did not answer."""
        try:
            await provider.send("eth_blockNumber", [], lane=Lane.LIVE)
        except Exception as error:
            if not is_transient(error) and not isinstance(error, RpcError):
                raise
            return False
        return True

    async def close(self) -> None:
        if not self._owns_transports:
            return
        for provider in self.providers:
            await provider.transport.close()


@dataclass(frozen=True, slots=True)
class RpcRules:
    """The retry and breaker rules every call follows (``[rpc]``), subscriptions included."""

    breaker_failures: int = 5
    breaker_reset_s: float = 10.0
    requests_per_second: float = 0.0
    max_tries: int = 8
    max_backoff_s: float = 10.0
    timeout_s: float = 30.0

    def endpoint(
        self,
        transport: Transport,
        *,
        fallbacks: Sequence[Transport] = (),
        batch_blocks: int = 1000,
        on_provider_call: OnCall | None = None,
    ) -> Endpoint:
        return Endpoint(
            transport,
            fallbacks=fallbacks,
            breaker_failures=self.breaker_failures,
            breaker_reset_s=self.breaker_reset_s,
            requests_per_second=self.requests_per_second,
            max_tries=self.max_tries,
            max_backoff_s=self.max_backoff_s,
            timeout_s=self.timeout_s,
            batch_blocks=batch_blocks,
            on_provider_call=on_provider_call,
        )


class CurrentSpanPolicy(SpanPolicy):
    """The span policy of the provider in use: each provider learns its own window cap (SPEC §7),
    and the backfill, which holds one policy, sees the one of whoever serves it now."""

    def __init__(self, endpoint: Endpoint, batch_blocks: int) -> None:
        super().__init__(batch_blocks)
        self._endpoint = endpoint

    def _policy(self) -> SpanPolicy:
        return self._endpoint.current.span_policy

    def limit(self) -> int:
        return self._policy().limit()

    def window(self, start: int, last: int) -> BlockRange:
        return self._policy().window(start, last)

    def on_success(self) -> None:
        self._policy().on_success()

    def on_failure(self, request: BlockRange, classified: Classified) -> Decision:
        return self._policy().on_failure(request, classified)
