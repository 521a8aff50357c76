"""The doctor's broker checks (SPEC §5, §10).

dry-run: one passing line (nothing leaves the machine). alpaca: the keys work (``GET
/v2/account``), the account may trade, the market clock is read, and shorting is enabled where
hedges may sell short: a SELL hedge (our orders bought tokens on-chain) beyond the shares the
account holds opens a short, so the account must allow shorting, and every ticker the database
already trades must be a known, tradable, shortable asset. Keys are never shown; each request
has the doctor's short deadline and is sent once.
"""

from __future__ import annotations

import asyncio

from bot.broker.alpaca import AlpacaBroker
from bot.broker.base import AccountState
from bot.config import Settings, redact_url
from bot.doctor.chain_checks import describe
from bot.doctor.model import CheckResult, failed, passed, skipped
from bot.errors import BrokerAuthError

_KEYS_FIX = (
    "check broker.alpaca.api_key_id and broker.alpaca.api_secret (or BOT__BROKER__ALPACA__"
    "API_KEY_ID / BOT__BROKER__ALPACA__API_SECRET): paper keys for a paper base_url"
)


async def broker_checks(
    settings: Settings, tickers: list[str], timeout_s: float
) -> list[CheckResult]:
    if settings.broker.kind == "dry-run":
        return [passed("broker", "dry-run (no orders leave this machine)")]
    alpaca = settings.broker.alpaca
    key_id = alpaca.api_key_id.get_secret_value()
    secret = alpaca.api_secret.get_secret_value()
    if not key_id or not secret:
        empty = [
            key for key, value in (("api_key_id", key_id), ("api_secret", secret)) if not value
        ]
        return [
            failed(
                "broker keys",
                "broker.kind is alpaca but broker.alpaca." + " and ".join(empty) + " is empty",
                _KEYS_FIX,
            ),
            *_not_checked(),
        ]
    broker = AlpacaBroker(
        base_url=alpaca.base_url, key_id=key_id, secret=secret, timeout_s=timeout_s
    )
    try:
        return await _alpaca_checks(broker, redact_url(alpaca.base_url), tickers, timeout_s)
    finally:
        await broker.aclose()


def _not_checked() -> list[CheckResult]:
    reason = "not checked: the keys do not work (see broker keys)"
    return [skipped(name, reason) for name in ("broker account", "broker clock", "broker shorting")]


async def _alpaca_checks(
    broker: AlpacaBroker, where: str, tickers: list[str], timeout_s: float
) -> list[CheckResult]:
    try:
        async with asyncio.timeout(timeout_s):
            account = await broker.account()
    except BrokerAuthError:
        return [failed("broker keys", f"{where} refused the API keys", _KEYS_FIX), *_not_checked()]
    except Exception as exc:  # any other fault: the broker could not be asked
        return [
            failed(
                "broker keys",
                f"cannot ask {where} (GET /v2/account): {describe(exc, timeout_s)}",
                "check broker.alpaca.base_url and that this machine can reach it",
            ),
            *_not_checked(),
        ]
    results = [
        passed("broker keys", f"{where} accepted the keys (account {account.account_id})"),
        _account_check(account),
        await _clock_check(broker, timeout_s),
        await _shorting_check(broker, account, tickers, timeout_s),
    ]
    return results


def _account_check(account: AccountState) -> CheckResult:
    name = "broker account"
    problems = [
        flag
        for flag, on in (
            ("trading_blocked", account.trading_blocked),
            ("account_blocked", account.account_blocked),
        )
        if on
    ]
    if account.status.upper() != "ACTIVE":
        problems.append(f"status {account.status}")
    if problems:
        return failed(
            name,
            f"account {account.account_id} may not trade: {', '.join(problems)}",
            "resolve it in the Alpaca dashboard or with Alpaca support (no hedge goes out)",
        )
    return passed(name, f"may trade (status {account.status}, buying power {account.buying_power})")


async def _clock_check(broker: AlpacaBroker, timeout_s: float) -> CheckResult:
    name = "broker clock"
    try:
        async with asyncio.timeout(timeout_s):
            clock = await broker.clock()
    except Exception as exc:  # any fault is this check's finding
        return failed(
            name,
            f"GET /v2/clock failed: {describe(exc, timeout_s)}",
            "check broker.alpaca.base_url and the broker's status page",
        )
    if clock.is_open:
        return passed(name, f"market open (closes {clock.next_close})")
    return passed(name, f"market closed (opens {clock.next_open})")


async def _shorting_check(
    broker: AlpacaBroker, account: AccountState, tickers: list[str], timeout_s: float
) -> CheckResult:
    name = "broker shorting"
    if not account.shorting_enabled:
        return failed(
            name,
            "shorting is disabled on the account: a SELL hedge beyond the shares it holds "
            "would be refused",
            "enable shorting in the account's configuration at Alpaca (the dashboard)",
        )
    problems: list[str] = []
    for ticker in tickers:
        try:
            async with asyncio.timeout(timeout_s):
                asset = await broker.asset(ticker)
        except Exception as exc:  # any fault is this check's finding
            problems.append(f"{ticker}: GET /v2/assets failed: {describe(exc, timeout_s)}")
            continue
        if asset is None:
            problems.append(f"{ticker} is not an asset the broker knows")
        elif not asset.tradable:
            problems.append(f"{ticker} is not tradable")
        elif not asset.shortable:
            problems.append(f"{ticker} is not shortable")
    if problems:
        return failed(
            name,
            "; ".join(problems),
            "hedges of these tickers will be refused: check the token names, or stop quoting "
            "orders for them",
        )
    traded = f"; {len(tickers)} traded ticker(s) tradable and shortable" if tickers else ""
    return passed(name, f"shorting enabled{traded}")
