"""Symbol rules (SPEC §3): stablecoins, exactly one case-sensitive equity marker, ticker pattern."""

from __future__ import annotations

import pytest

from bot.core.tokens import DEFAULT_RULES, RoleKind, SymbolRules, TokenRole, classify

EQUITY, STABLE, OTHER = RoleKind.EQUITY, RoleKind.STABLECOIN, RoleKind.OTHER


@pytest.mark.parametrize(
    ("symbol", "kind", "ticker", "reason"),
    [
        # stablecoins: exact, case-sensitive
        ("USDC", STABLE, None, ""),
        ("usdc", OTHER, None, "no equity marker"),
        ("USDT", OTHER, None, "no equity marker"),
        # one suffix or one prefix marker
        ("AAPLs1", EQUITY, "AAPL", ""),
        ("TSLA0x", EQUITY, "TSLA", ""),
        ("wtNVDA", EQUITY, "NVDA", ""),
        ("BRK.Bs1", EQUITY, "BRK.B", ""),
        ("A1s1", EQUITY, "A1", ""),
        ("Xs1", EQUITY, "X", ""),
        ("ABCDEFGHIJs1", EQUITY, "ABCDEFGHIJ", ""),  # 10 characters: the longest ticker
        # case-sensitive markers and tickers
        ("AAPLS1", OTHER, None, "no equity marker"),
        ("aaplS1", OTHER, None, "no equity marker"),
        ("AAPL0X", OTHER, None, "no equity marker"),
        ("WTNVDA", OTHER, None, "no equity marker"),
        ("aapls1", OTHER, None, "does not match"),
        ("wtnvda", OTHER, None, "does not match"),
        ("wtAapl", OTHER, None, "does not match"),
        # exactly one marker
        ("wtAAPLs1", OTHER, None, "two equity markers"),
        ("wtAAPL0x", OTHER, None, "two equity markers"),
        ("AAPLs1s1", OTHER, None, "does not match"),
        ("wtwtAAPL", OTHER, None, "does not match"),
        # traps and bad tickers
        ("tBTC", OTHER, None, "no equity marker"),
        ("WETH", OTHER, None, "no equity marker"),
        ("s1", OTHER, None, "ticker ''"),
        ("wt", OTHER, None, "ticker ''"),
        ("", OTHER, None, "no equity marker"),
        ("ABCDEFGHIJKs1", OTHER, None, "does not match"),  # 11 characters
        ("1AAPLs1", OTHER, None, "does not match"),
        (".As1", OTHER, None, "does not match"),
        ("AA PLs1", OTHER, None, "does not match"),
        ("AAPL\ns1", OTHER, None, "does not match"),
        ("ÄAPLs1", OTHER, None, "does not match"),  # non-ASCII capital
        ("AAPL-s1", OTHER, None, "does not match"),
    ],
)
def test_default_rules(symbol: str, kind: RoleKind, ticker: str | None, reason: str) -> None:
    role = classify(symbol, DEFAULT_RULES)
    assert (role.kind, role.ticker, role.symbol) == (kind, ticker, symbol)
    assert reason in role.reason
    if kind is OTHER:
        assert role.reason


def test_rules_from_config_lists() -> None:
    rules = SymbolRules(stablecoins=["USDC", "USDT"], equity_suffixes=["s1"], equity_prefixes=[])
    assert classify("USDT", rules) == TokenRole(STABLE, "USDT")
    assert classify("wtNVDA", rules).kind is OTHER  # the prefix is not configured here
    assert classify("AAPLs1", rules) == TokenRole(EQUITY, "AAPLs1", ticker="AAPL")
    assert rules == SymbolRules(["USDT", "USDC"], ("s1",), ())
    assert hash(rules) == hash(SymbolRules(["USDT", "USDC"], ("s1",), ()))


def test_defaults_match_the_spec() -> None:
    assert SymbolRules(["USDC"], ["s1", "0x"], ["wt"]) == DEFAULT_RULES


def test_stablecoin_list_wins_over_the_equity_pattern() -> None:
    rules = SymbolRules(stablecoins=["USDs1"], equity_suffixes=["s1"], equity_prefixes=[])
    assert classify("USDs1", rules).kind is STABLE
    assert classify("USDs1", DEFAULT_RULES) == TokenRole(EQUITY, "USDs1", ticker="USD")


def test_bare_t_prefix_only_when_configured() -> None:
    assert classify("tBTC", DEFAULT_RULES).kind is OTHER
    knowingly = SymbolRules(equity_prefixes=["wt", "t"])
    assert classify("tBTC", knowingly) == TokenRole(EQUITY, "tBTC", ticker="BTC")
    # "wt" and "t" overlap at the start of "wtNVDA": one marker, the longest is stripped
    assert classify("wtNVDA", knowingly) == TokenRole(EQUITY, "wtNVDA", ticker="NVDA")


def test_overlapping_suffixes_strip_the_longest() -> None:
    rules = SymbolRules(equity_suffixes=["1", "s1"], equity_prefixes=[])
    assert classify("AAPLs1", rules) == TokenRole(EQUITY, "AAPLs1", ticker="AAPL")
    assert classify("AAPL1", rules) == TokenRole(EQUITY, "AAPL1", ticker="AAPL")


def test_upper_case_markers_still_refuse_two_markers() -> None:
    rules = SymbolRules(equity_suffixes=["S1"], equity_prefixes=["X"])
    assert classify("XAAPLS1", rules).kind is OTHER
    assert classify("AAPLS1", rules) == TokenRole(EQUITY, "AAPLS1", ticker="AAPL")


@pytest.mark.parametrize(
    ("suffixes", "prefixes"), [([""], ["wt"]), (["s1"], [""])], ids=["suffix", "prefix"]
)
def test_empty_marker_is_refused(suffixes: list[str], prefixes: list[str]) -> None:
    with pytest.raises(ValueError, match="empty equity marker"):
        SymbolRules(equity_suffixes=suffixes, equity_prefixes=prefixes)
