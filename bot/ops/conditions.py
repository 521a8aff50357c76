"""Alert conditions (pure, no I/O): what to tell an operator, and when (SPEC §10).

Rules:
- A *lasting* condition (executions paused, a ticker parked, a stale stream, the broker unreachable
  or blocked, drift, an execution stuck, a ticker unhedged too long) is identified by its kind and a
  key (a ticker, an execution id, a provider; ``""`` when there is only one). It raises one alert
  when it becomes active; repeats while it stays active raise nothing; when it ends it raises one
  ``<kind>_cleared`` alert, and only then may it fire again.
- A *one-shot* kind (``deep_reorg``, ``late_event``) raises an alert every time it is observed and
  has no cleared form: each occurrence is news.
- Time-based conditions are evaluated from explicit ``now`` values, so they are testable without a
  clock: an execution in flight for more than 10 minutes; a ticker whose |unhedged| is at or above
  its threshold for more than 10 minutes while its market is open.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import TypeAlias

from bot.core.amounts import to_text

DetailValue: TypeAlias = str | int | bool | None
"""JSON-safe detail values: amounts travel as decimal strings, never floats."""

STUCK_AFTER = timedelta(minutes=10)
UNHEDGED_AFTER = timedelta(minutes=10)
DEEP_REORG_BLOCKS = 3
"""A reorg deeper than this many blocks is alerted (shallow ones are routine)."""

RESERVED_FIELDS = frozenset({"kind", "message", "at"})


class AlertKind(StrEnum):
    PAUSED = "paused"
    PARKED = "parked"
    STREAM_STALE = "stream_stale"
    BROKER_UNREACHABLE = "broker_unreachable"
    BROKER_BLOCKED = "broker_blocked"
    DRIFT = "drift"
    DEEP_REORG = "deep_reorg"
    LATE_EVENT = "late_event"
    EXECUTION_STUCK = "execution_stuck"
    UNHEDGED_TOO_LONG = "unhedged_too_long"
    PAUSED_CLEARED = "paused_cleared"
    PARKED_CLEARED = "parked_cleared"
    STREAM_STALE_CLEARED = "stream_stale_cleared"
    BROKER_UNREACHABLE_CLEARED = "broker_unreachable_cleared"
    BROKER_BLOCKED_CLEARED = "broker_blocked_cleared"
    DRIFT_CLEARED = "drift_cleared"
    EXECUTION_STUCK_CLEARED = "execution_stuck_cleared"
    UNHEDGED_TOO_LONG_CLEARED = "unhedged_too_long_cleared"

    @property
    def is_cleared(self) -> bool:
        return self.value.endswith("_cleared")

    @property
    def is_one_shot(self) -> bool:
        return self in ONE_SHOT


ONE_SHOT = frozenset({AlertKind.DEEP_REORG, AlertKind.LATE_EVENT})

CLEARED_FORM: Mapping[AlertKind, AlertKind] = {
    kind: AlertKind(f"{kind.value}_cleared")
    for kind in AlertKind
    if not kind.is_cleared and kind not in ONE_SHOT
}


@dataclass(frozen=True)
class Alert:
    """One alert to log and send. ``at`` is timezone-aware; ``details`` are JSON-safe extras."""

    kind: AlertKind
    message: str
    at: datetime
    key: str = ""
    details: Mapping[str, DetailValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ValueError("Alert.at must be timezone-aware (UTC)")
        clash = RESERVED_FIELDS & set(self.details)
        if clash:
            raise ValueError(f"alert details may not override {sorted(clash)}")
        for name, value in self.details.items():
            # Amounts go as decimal strings: a float would round, a Decimal is not JSON.
            if value is not None and not isinstance(value, str | int):
                raise TypeError(f"alert detail {name!r} must be str, int, bool or None")

    @property
    def is_cleared(self) -> bool:
        return self.kind.is_cleared

    def payload(self) -> dict[str, DetailValue]:
        """The webhook body: ``{"kind", "message", "at" (ISO 8601 UTC), …details}``."""
        body: dict[str, DetailValue] = {
            "kind": self.kind.value,
            "message": self.message,
            "at": self.at.astimezone(UTC).isoformat(),
        }
        body.update(self.details)
        return body


@dataclass(frozen=True)
class Finding:
    """A condition seen active now, before de-duplication turns it into an alert (or nothing)."""

    key: str
    message: str
    details: Mapping[str, DetailValue] = field(default_factory=dict)


class Conditions:
    """De-duplicates observations into alerts: once when active, once ``_cleared`` when it ends."""

    def __init__(self) -> None:
        self._active: dict[tuple[AlertKind, str], Alert] = {}

    def observe(
        self,
        kind: AlertKind,
        key: str,
        active: bool,
        message: str,
        now: datetime,
        *,
        details: Mapping[str, DetailValue] | None = None,
    ) -> list[Alert]:
        """The alerts this observation raises (zero or one).

        ``message`` describes the state observed: the condition while active, its end when not
        (an empty message on clearing gets a generic one). A cleared alert carries the details it
        was raised with unless new ones are given.
        """
        if kind.is_cleared:
            raise ValueError(f"observe the condition itself, not {kind.value}")
        if kind.is_one_shot:
            if not active:
                return []
            return [Alert(kind, message, now, key, dict(details or {}))]
        slot = (kind, key)
        raised = self._active.get(slot)
        if active:
            if raised is not None:
                return []
            alert = Alert(kind, message, now, key, dict(details or {}))
            self._active[slot] = alert
            return [alert]
        if raised is None:
            return []
        del self._active[slot]
        text = message or f"{kind.value} cleared" + (f": {key}" if key else "")
        extras = dict(details) if details is not None else dict(raised.details)
        return [Alert(CLEARED_FORM[kind], text, now, key, extras)]

    def observe_set(
        self, kind: AlertKind, findings: Iterable[Finding], now: datetime
    ) -> list[Alert]:
        """Observe every key of ``kind`` at once: the findings are the keys active now; an active
        key missing from them has ended (e.g. the set of parked tickers on each tick)."""
        alerts: list[Alert] = []
        seen: set[str] = set()
        for finding in findings:
            seen.add(finding.key)
            alerts += self.observe(
                kind, finding.key, True, finding.message, now, details=finding.details
            )
        for active_kind, key in [slot for slot in self._active if slot[0] is kind]:
            if key not in seen:
                alerts += self.observe(active_kind, key, False, "", now)
        return alerts

    def active(self) -> list[Alert]:
        """The conditions raised and not yet cleared, oldest first (for the status page)."""
        return sorted(self._active.values(), key=lambda alert: alert.at)

    def is_active(self, kind: AlertKind, key: str = "") -> bool:
        return (kind, key) in self._active


def deep_reorg_finding(depth: int, fork_block: int) -> Finding | None:
    """A reorg deeper than ``DEEP_REORG_BLOCKS`` is news; the key names the fork point."""
    if depth <= DEEP_REORG_BLOCKS:
        return None
    return Finding(
        key=f"{fork_block}:{depth}",
        message=f"reorg {depth} blocks deep at block {fork_block}",
        details={"depth": depth, "block": fork_block},
    )


@dataclass(frozen=True)
class InFlightExecution:
    """An execution submitted and not final; ``since`` is when it was created/submitted."""

    execution_id: int
    ticker: str
    since: datetime
    shares: Decimal | None = None


def stuck_executions(
    in_flight: Iterable[InFlightExecution], now: datetime, after: timedelta = STUCK_AFTER
) -> list[Finding]:
    """Executions in flight for more than ``after`` (strictly), keyed by execution id."""
    findings: list[Finding] = []
    for execution in in_flight:
        age = now - execution.since
        if age <= after:
            continue
        details: dict[str, DetailValue] = {
            "ticker": execution.ticker,
            "execution_id": execution.execution_id,
            "in_flight_s": int(age.total_seconds()),
        }
        if execution.shares is not None:
            details["shares"] = to_text(execution.shares)
        findings.append(
            Finding(
                key=str(execution.execution_id),
                message=(
                    f"execution {execution.execution_id} ({execution.ticker}) in flight for "
                    f"{int(age.total_seconds()) // 60} min"
                ),
                details=details,
            )
        )
    return findings


@dataclass(frozen=True)
class TickerExposure:
    """One ticker's unhedged shares (signed), its effective threshold, and its market state."""

    ticker: str
    unhedged_shares: Decimal
    threshold_shares: Decimal
    market_open: bool


class UnhedgedWatch:
    """Tracks since when each ticker has been unhedged at or above its threshold with its market
    open; the clock restarts when it drops below, its market closes, or it is not reported."""

    def __init__(self, after: timedelta = UNHEDGED_AFTER) -> None:
        self._after = after
        self._since: dict[str, datetime] = {}

    def check(self, exposures: Iterable[TickerExposure], now: datetime) -> list[Finding]:
        """Findings for tickers exposed for more than ``after`` (strictly), keyed by ticker."""
        findings: list[Finding] = []
        exposed: set[str] = set()
        for item in exposures:
            if not item.market_open or abs(item.unhedged_shares) < item.threshold_shares:
                continue
            exposed.add(item.ticker)
            since = self._since.setdefault(item.ticker, now)
            if now - since <= self._after:
                continue
            minutes = int((now - since).total_seconds()) // 60
            findings.append(
                Finding(
                    key=item.ticker,
                    message=(
                        f"{item.ticker} unhedged {to_text(item.unhedged_shares)} shares "
                        f"(threshold {to_text(item.threshold_shares)}) for {minutes} min"
                    ),
                    details={
                        "ticker": item.ticker,
                        "unhedged_shares": to_text(item.unhedged_shares),
                        "threshold_shares": to_text(item.threshold_shares),
                        "since": since.astimezone(UTC).isoformat(),
                    },
                )
            )
        for ticker in set(self._since) - exposed:
            del self._since[ticker]
        return findings

    def since(self, ticker: str) -> datetime | None:
        """When ``ticker`` was first seen exposed in the current stretch (None if it is not)."""
        return self._since.get(ticker)
