"""Token roles from ERC-20 symbols: stablecoin, equity (with its ticker) or other (SPEC §3).

Decisions (each has a test in ``tests/core/test_tokens.py``):

- Matching is **case-sensitive** everywhere: ``AAPLS1`` (upper-case ``S1``) and ``aaplS1`` are not
  equities with the default markers, and ``usdc`` is not ``USDC``.
- The stablecoin list is explicit configuration, so it wins over the equity pattern: a symbol
  listed as a stablecoin is a stablecoin even if it also looks like an equity.
- An equity symbol carries **exactly one** marker: a prefix from ``equity_prefixes`` or a suffix
  from ``equity_suffixes``. A symbol with both a prefix and a suffix marker (``wtAAPLs1``) is not an
  equity: which of the two is the marker is ambiguous, and guessing would hedge the wrong ticker.
  When several configured suffixes (or prefixes) match the same end of the symbol (``s1`` and
  ``1``), they are one marker, and the longest one is stripped.
- What remains, the ticker, must fully match ``[A-Z][A-Z0-9.]{0,9}`` (ASCII only): an empty
  ticker (``s1``), a lower-case one (``aapls1``), one that keeps a second marker (``AAPLs1s1``)
  or one longer than 10 characters is not an equity.
- No bare ``t`` prefix by default: it would turn ``tBTC`` into an equity ``BTC``. A marker made only
  of ticker characters (``X``) is allowed but ambiguous (``AAPLX`` → ``AAPL``): configure it
  knowingly. Empty markers are refused (they would match every symbol).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum

TICKER_PATTERN = re.compile(r"[A-Z][A-Z0-9.]{0,9}", re.ASCII)

DEFAULT_STABLECOINS = ("USDC",)
DEFAULT_EQUITY_SUFFIXES = ("s1", "0x")
DEFAULT_EQUITY_PREFIXES = ("wt",)


class RoleKind(StrEnum):
    STABLECOIN = "stablecoin"
    EQUITY = "equity"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class TokenRole:
    """The role of one symbol; ``ticker`` is set for equities, ``reason`` explains ``OTHER``."""

    kind: RoleKind
    symbol: str
    ticker: str | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SymbolRules:
    """The symbol rules of ``[accumulator]``, built from the config lists as given.

    The constructor accepts any collections (the config holds lists) and stores them as a
    frozenset and tuples ordered longest marker first, so overlapping markers strip the longest.
    """

    stablecoins: Collection[str] = DEFAULT_STABLECOINS
    equity_suffixes: Collection[str] = DEFAULT_EQUITY_SUFFIXES
    equity_prefixes: Collection[str] = DEFAULT_EQUITY_PREFIXES

    def __post_init__(self) -> None:
        for marker in (*self.equity_suffixes, *self.equity_prefixes):
            if not marker:
                raise ValueError("an empty equity marker would match every symbol")
        object.__setattr__(self, "stablecoins", frozenset(self.stablecoins))
        object.__setattr__(self, "equity_suffixes", _longest_first(self.equity_suffixes))
        object.__setattr__(self, "equity_prefixes", _longest_first(self.equity_prefixes))


def _longest_first(markers: Collection[str]) -> tuple[str, ...]:
    return tuple(sorted(set(markers), key=lambda marker: (-len(marker), marker)))


DEFAULT_RULES = SymbolRules()


def classify(symbol: str, rules: SymbolRules) -> TokenRole:
    """Classify one ERC-20 symbol (the module docstring lists the decisions)."""
    if symbol in rules.stablecoins:
        return TokenRole(RoleKind.STABLECOIN, symbol)
    suffix = next((s for s in rules.equity_suffixes if symbol.endswith(s)), None)
    prefix = next((p for p in rules.equity_prefixes if symbol.startswith(p)), None)
    if suffix is None and prefix is None:
        return TokenRole(RoleKind.OTHER, symbol, reason="no equity marker")
    if suffix is not None and prefix is not None:
        return TokenRole(
            RoleKind.OTHER,
            symbol,
            reason=f"two equity markers (prefix {prefix!r} and suffix {suffix!r})",
        )
    ticker = symbol[: -len(suffix)] if suffix is not None else symbol[len(prefix or "") :]
    if TICKER_PATTERN.fullmatch(ticker) is None:
        return TokenRole(
            RoleKind.OTHER,
            symbol,
            reason=f"ticker {ticker!r} does not match {TICKER_PATTERN.pattern}",
        )
    return TokenRole(RoleKind.EQUITY, symbol, ticker=ticker)
