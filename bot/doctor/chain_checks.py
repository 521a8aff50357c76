"""The doctor's chain checks (SPEC §10): providers and their chain id, the WebSocket
subscription, the orderbook's code, and the local clock against the latest block.

Every network step runs under a short deadline (``timeout_s``, 5 s by default) and is tried once:
a dead or silent node gives a fast failing line, never a hang or a retry loop. Any fault of a
provider (error answer, refused connection, malformed answer, timeout) is that check's failure,
never a traceback. URLs are shown redacted (providers embed keys in them).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from bot.chain.calls import ChainCalls
from bot.chain.endpoint import Endpoint
from bot.chain.parse import quantity
from bot.chain.transport import transport_for
from bot.chain.ws import WsConnection
from bot.config import DEVNET_CHAIN_ID, Settings, redact_url
from bot.doctor.model import CheckResult, failed, passed, skipped

DEFAULT_TIMEOUT_S = 5.0
MAX_CLOCK_SKEW_S = 30


def describe(error: BaseException, timeout_s: float) -> str:
    """A one-line reason; a bare timeout has no message of its own."""
    if isinstance(error, TimeoutError) and not str(error):
        return f"no answer within {timeout_s:g} s"
    return " ".join(str(error).split()) or type(error).__name__


@dataclass(frozen=True, slots=True)
class ProviderSource:
    """A provider URL and the config key it comes from (the fix names the key)."""

    key: str
    url: str

    @property
    def shown(self) -> str:
        return f"{self.key} ({redact_url(self.url)})"


def provider_sources(settings: Settings) -> list[ProviderSource]:
    """Every provider the bot may use, in the order it uses them for calls; no URL twice.

    ``chain.fallback_urls`` is read with ``getattr`` so this works with configs that predate it.
    """
    chain = settings.chain
    candidates = [ProviderSource("chain.http_url", chain.http_url)] if chain.http_url else []
    candidates.append(ProviderSource("chain.ws_url", chain.ws_url))
    fallbacks: list[str] = list(getattr(chain, "fallback_urls", []) or [])
    candidates += [ProviderSource(f"chain.fallback_urls[{i}]", u) for i, u in enumerate(fallbacks)]
    seen: set[str] = set()
    unique = []
    for source in candidates:
        if source.url and source.url not in seen:
            seen.add(source.url)
            unique.append(source)
    return unique


@dataclass(slots=True)
class ProviderProbe:
    source: ProviderSource
    calls: ChainCalls
    chain_id: int | None = None
    head: int | None = None
    error: str = ""


async def probe(source: ProviderSource, timeout_s: float) -> ProviderProbe:
    """Ask one provider its chain id and head, once, within ``timeout_s``."""
    endpoint = Endpoint(transport_for(source.url), max_tries=1, timeout_s=timeout_s)
    found = ProviderProbe(source, ChainCalls(endpoint))
    try:
        async with asyncio.timeout(timeout_s):
            found.chain_id = await found.calls.chain_id()
            found.head = await found.calls.block_number()
    except Exception as exc:  # any fault of this provider is this check's finding
        found.chain_id = None
        found.error = describe(exc, timeout_s)
    return found


async def probe_all(settings: Settings, timeout_s: float) -> list[ProviderProbe]:
    return list(await asyncio.gather(*(probe(s, timeout_s) for s in provider_sources(settings))))


async def close_all(probes: list[ProviderProbe]) -> None:
    for found in probes:
        await found.calls.endpoint.close()


def providers_check(probes: list[ProviderProbe]) -> CheckResult:
    """Every provider answers, all with the same chain id (``run`` exits 3 otherwise)."""
    name = "providers"
    down = [p for p in probes if p.error]
    if down:
        detail = "; ".join(f"{p.source.shown} does not answer: {p.error}" for p in down)
        keys = ", ".join(p.source.key for p in down)
        return failed(name, detail, f"start the node, or correct {keys} (or remove it)")
    chain_ids = {p.chain_id for p in probes}
    if len(chain_ids) > 1:
        detail = "providers disagree: " + ", ".join(
            f"{p.source.shown} answers chain {p.chain_id}" for p in probes
        )
        return failed(
            name, detail, "every provider must serve the same chain: fix or remove the odd one"
        )
    shown = ", ".join(f"{p.source.shown} head {p.head}" for p in probes)
    return passed(name, f"chain {probes[0].chain_id} from {shown}")


def healthy(probes: list[ProviderProbe]) -> ProviderProbe | None:
    """The first provider that answered (the one ``run`` would use for calls)."""
    return next((p for p in probes if not p.error), None)


async def subscription_check(ws_url: str, timeout_s: float) -> CheckResult:
    """``eth_subscribe newHeads`` confirms on ``chain.ws_url``; then unsubscribe and close."""
    name = "subscription"
    where = redact_url(ws_url)
    connection: WsConnection | None = None
    try:
        async with asyncio.timeout(timeout_s):
            connection = await WsConnection.open(ws_url, timeout_s=timeout_s)
            subscription = await connection.subscribe("newHeads")
            await connection.request("eth_unsubscribe", [subscription], timeout_s=timeout_s)
    except Exception as exc:  # any fault is this check's finding
        return failed(
            name,
            f"newHeads subscription on chain.ws_url ({where}) not confirmed: "
            f"{describe(exc, timeout_s)}",
            "chain.ws_url must be a WebSocket endpoint that accepts eth_subscribe",
        )
    finally:
        if connection is not None:
            await connection.close()
    return passed(name, f"newHeads subscription confirmed on {where}")


async def orderbook_check(
    settings: Settings, provider: ProviderProbe | None, timeout_s: float
) -> CheckResult:
    """The orderbook address has contract code, and its deployment block is not in the future."""
    name = "orderbook"
    if provider is None:
        return skipped(name, "not checked: no provider answered (see providers)")
    address = settings.orderbook.address
    try:
        async with asyncio.timeout(timeout_s):
            code = await provider.calls.endpoint.call(
                "eth_getCode", [address, "latest"], max_tries=1
            )
    except Exception as exc:  # any fault is this check's finding
        return failed(
            name,
            f"eth_getCode({address}) on {provider.source.shown} failed: {describe(exc, timeout_s)}",
            "check the provider (see providers)",
        )
    if not isinstance(code, str) or code in ("0x", "0x0", ""):
        return failed(
            name,
            f"no contract code at orderbook.address {address} on chain {provider.chain_id}",
            "correct orderbook.address, or point the providers at the chain it is deployed on",
        )
    deployment_block = settings.orderbook.deployment_block
    if provider.head is not None and deployment_block > provider.head:
        return failed(
            name,
            f"orderbook.deployment_block {deployment_block} is above the head {provider.head}",
            "set orderbook.deployment_block to the block the orderbook was deployed in",
        )
    size = (len(code) - 2) // 2
    return passed(name, f"{address} has code ({size} bytes) on chain {provider.chain_id}")


def clock_skew_check(chain_id: int, block_number: int, block_time: int, now: float) -> CheckResult:
    """The local clock within 30 s of the latest block's timestamp; skipped on a devnet (31337),
    whose blocks are mined only on demand, so the latest one may be hours old."""
    name = "block time"
    if chain_id == DEVNET_CHAIN_ID:
        return skipped(name, f"chain {chain_id} (devnet): its quiet blocks are old")
    skew = now - block_time
    detail = f"the local clock is {abs(skew):.0f} s {'ahead of' if skew >= 0 else 'behind'} block "
    detail += f"{block_number}'s timestamp"
    if abs(skew) > MAX_CLOCK_SKEW_S:
        return failed(
            name,
            detail + f" (more than {MAX_CLOCK_SKEW_S} s)",
            "synchronise the local clock (e.g. `timedatectl set-ntp true`), "
            "or use a provider that is not behind the chain",
        )
    return passed(name, detail)


async def block_time_check(provider: ProviderProbe | None, timeout_s: float) -> CheckResult:
    name = "block time"
    if provider is None or provider.chain_id is None:
        return skipped(name, "not checked: no provider answered (see providers)")
    if provider.chain_id == DEVNET_CHAIN_ID:
        return clock_skew_check(provider.chain_id, 0, 0, 0.0)
    try:
        async with asyncio.timeout(timeout_s):
            block: Any = await provider.calls.endpoint.call(
                "eth_getBlockByNumber", ["latest", False], max_tries=1
            )
        number = quantity(block["number"], "number")
        stamp = quantity(block["timestamp"], "timestamp")
    except Exception as exc:  # any fault (including a malformed block) is this check's finding
        return failed(
            name,
            f"cannot read the latest block from {provider.source.shown}: "
            f"{describe(exc, timeout_s)}",
            "check the provider (see providers)",
        )
    return clock_skew_check(provider.chain_id, number, stamp, time.time())
