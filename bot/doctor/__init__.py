"""``bot doctor``: pre-flight checks an operator runs before (or beside) ``run`` (SPEC §10).

:func:`run_doctor` loads the config and runs every check; each gives one
:class:`~bot.doctor.model.CheckResult`, in this order: config, providers, subscription,
orderbook, block time, database, broker (one line for dry-run, four for alpaca), disk, secrets.
The doctor takes no lock, writes nothing to the database, and gives every network step a short
deadline, so a dead node or broker gives a failing line within seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from bot.config import DEVNET_CHAIN_ID, LoadedConfig, Settings, load, redact_url
from bot.doctor import chain_checks, local_checks
from bot.doctor.broker_checks import broker_checks
from bot.doctor.chain_checks import DEFAULT_TIMEOUT_S
from bot.doctor.model import CheckResult, failed, lines, passed, report
from bot.errors import ConfigError

__all__ = ["DEFAULT_TIMEOUT_S", "CheckResult", "lines", "report", "run_checks", "run_doctor"]


def _config_check(loaded: LoadedConfig, chain_id: int | None) -> CheckResult:
    """Loaded; and ``live.confirmations`` set off a devnet (``run`` exits 3 without it)."""
    if chain_id is not None and chain_id != DEVNET_CHAIN_ID and not loaded.confirmations_set:
        return failed(
            "config",
            f"{loaded.path} loads, but live.confirmations is not set and chain {chain_id} is "
            "not a devnet (31337)",
            "set live.confirmations (e.g. 12) in the file or BOT__LIVE__CONFIRMATIONS",
        )
    return passed("config", f"{loaded.path} loads (file and BOT__ environment)")


_MIN_SECRET_TAIL = 12


def _secret_texts(settings: Settings) -> list[tuple[str, str]]:
    """``(secret, shown instead)`` pairs, longest first: the broker keys, and provider URLs with
    credentials together with their credential part (a library's error text may quote either).
    A short URL path (``/ws``) is left alone: it is no key and would garble words."""
    pairs: list[tuple[str, str]] = []
    for source in chain_checks.provider_sources(settings):
        shown = redact_url(source.url)
        if shown == source.url:
            continue
        pairs.append((source.url, shown))
        rest = source.url.partition("://")[2]
        host, _, tail = rest.partition("/")
        pairs += [(part, "<redacted>") for part in (tail, host.rpartition("@")[0]) if part]
    alpaca = settings.broker.alpaca
    for secret in (alpaca.api_key_id, alpaca.api_secret):
        pairs.append((secret.get_secret_value(), "<redacted>"))
    usable = {(s, r) for s, r in pairs if len(s) >= _MIN_SECRET_TAIL or "://" in s}
    return sorted(usable, key=lambda pair: -len(pair[0]))


def _scrubbed(results: list[CheckResult], settings: Settings) -> list[CheckResult]:
    """The last guard of "never print a secret": each check already shows redacted URLs and no
    key; this replaces any secret that still got into a text (an error message quoting one)."""
    pairs = _secret_texts(settings)

    def scrub(text: str) -> str:
        for secret, shown in pairs:
            text = text.replace(secret, shown)
        return text

    return [dataclasses.replace(r, detail=scrub(r.detail), fix=scrub(r.fix)) for r in results]


async def run_checks(
    loaded: LoadedConfig, *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> list[CheckResult]:
    """Every check of a loaded config; the chain and the broker are asked concurrently."""
    settings = loaded.settings
    tickers = local_checks.traded_tickers(loaded.database_path)

    async def chain_group() -> tuple[list[chain_checks.ProviderProbe], list[CheckResult]]:
        probes, subscription = await asyncio.gather(
            chain_checks.probe_all(settings, timeout_s),
            chain_checks.subscription_check(settings.chain.ws_url, timeout_s),
        )
        try:
            provider = chain_checks.healthy(probes)
            orderbook, block_time = await asyncio.gather(
                chain_checks.orderbook_check(settings, provider, timeout_s),
                chain_checks.block_time_check(provider, timeout_s),
            )
        finally:
            await chain_checks.close_all(probes)
        providers = chain_checks.providers_check(probes)
        return probes, [providers, subscription, orderbook, block_time]

    (probes, chain_results), broker_results = await asyncio.gather(
        chain_group(), broker_checks(settings, tickers, timeout_s)
    )
    # the chain id counts only when every provider that answered agrees on it
    chain_ids = {p.chain_id for p in probes if not p.error}
    chain_id = next(iter(chain_ids)) if len(chain_ids) == 1 else None
    results = [
        _config_check(loaded, chain_id),
        *chain_results,
        local_checks.database_check(loaded, chain_id),
        *broker_results,
        local_checks.disk_check(loaded.database_path),
        local_checks.secrets_check(loaded.path),
    ]
    return _scrubbed(results, settings)


async def run_doctor(
    config_path: Path | str, *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> list[CheckResult]:
    """Load the config (file + environment) and run every check; a config that does not load
    is the one failing line (nothing else can be checked without it)."""
    try:
        loaded = load(config_path)
    except ConfigError as exc:
        detail = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        return [
            failed("config", detail, "correct the named key (or its BOT__ environment variable)")
        ]
    return await run_checks(loaded, timeout_s=timeout_s)
