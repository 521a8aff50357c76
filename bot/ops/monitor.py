"""The run loop's one entry point for alerts: hand it what is true now, it says what is new.

Rules:
- ``OpsMonitor.tick(snapshot)`` evaluates every lasting condition of SPEC §10 from one
  ``OpsSnapshot`` and emits, through the ``AlertSink``, only the changes: a condition newly true,
  or a ``_cleared`` one for a condition that ended. Calling it every loop iteration is cheap and
  idempotent; calling it rarely only delays alerts.
- One-shot events (a reorg deeper than 3 blocks, a late event) are reported when they happen with
  ``deep_reorg`` and ``late_event``; each occurrence is sent.
- The heartbeat is logged at most once per interval (``beat``), the backlog warning once per
  episode (``backlog``); both only log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from loguru import logger

from bot.core.amounts import to_text
from bot.ops.alerts import AlertSink
from bot.ops.conditions import (
    STUCK_AFTER,
    UNHEDGED_AFTER,
    Alert,
    AlertKind,
    Conditions,
    Finding,
    InFlightExecution,
    TickerExposure,
    UnhedgedWatch,
    deep_reorg_finding,
    stuck_executions,
)
from bot.ops.heartbeat import (
    DEFAULT_BACKLOG_WARN,
    HEARTBEAT_INTERVAL_S,
    BacklogWarning,
    HeartbeatSnapshot,
    HeartbeatTimer,
    heartbeat_line,
)


@dataclass(frozen=True)
class OpsSnapshot:
    """What is true now; ``None`` / empty means the condition does not hold.

    - ``paused_reason``: why executions are paused (§8), or None.
    - ``parked``: ticker → why it is parked.
    - ``stream_stale``: why the live stream is stale or reconnecting, or None.
    - ``broker_unreachable`` / ``broker_blocked``: what the broker did (unreachable: transport or
      5xx failures; blocked: the account refuses trading), or None.
    - ``drift``: ticker → broker position minus hedged shares, for tickers whose drift is not
      accepted and not zero.
    - ``in_flight``: executions submitted and not final.
    - ``exposures``: every ticker's unhedged shares, threshold and market state.
    """

    now: datetime
    paused_reason: str | None = None
    parked: Mapping[str, str] = field(default_factory=dict)
    stream_stale: str | None = None
    broker_unreachable: str | None = None
    broker_blocked: str | None = None
    drift: Mapping[str, Decimal] = field(default_factory=dict)
    in_flight: Sequence[InFlightExecution] = ()
    exposures: Sequence[TickerExposure] = ()


class OpsMonitor:
    """Conditions → alerts → sink, plus the heartbeat and backlog lines."""

    def __init__(
        self,
        sink: AlertSink,
        *,
        stuck_after: timedelta = STUCK_AFTER,
        unhedged_after: timedelta = UNHEDGED_AFTER,
        heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S,
        backlog_warn: int = DEFAULT_BACKLOG_WARN,
    ) -> None:
        self.sink = sink
        self.conditions = Conditions()
        self._stuck_after = stuck_after
        self._unhedged = UnhedgedWatch(unhedged_after)
        self._timer = HeartbeatTimer(heartbeat_interval_s)
        self._backlog = BacklogWarning(backlog_warn)

    def tick(self, snapshot: OpsSnapshot) -> list[Alert]:
        """Evaluate every lasting condition; emit and return the alerts that are news."""
        now = snapshot.now
        observe = self.conditions.observe
        alerts: list[Alert] = []
        for kind, reason, what in (
            (AlertKind.PAUSED, snapshot.paused_reason, "executions paused"),
            (AlertKind.STREAM_STALE, snapshot.stream_stale, "live stream stale"),
            (AlertKind.BROKER_UNREACHABLE, snapshot.broker_unreachable, "broker unreachable"),
            (AlertKind.BROKER_BLOCKED, snapshot.broker_blocked, "broker blocks trading"),
        ):
            details = {"reason": reason} if reason is not None else None
            message = f"{what}: {reason}" if reason is not None else ""
            alerts += observe(kind, "", reason is not None, message, now, details=details)
        parked = [
            Finding(t, f"{t} parked: {why}", {"ticker": t, "reason": why})
            for t, why in sorted(snapshot.parked.items())
        ]
        alerts += self.conditions.observe_set(AlertKind.PARKED, parked, now)
        drift = [
            Finding(t, f"{t} drift {to_text(d)} shares", {"ticker": t, "drift_shares": to_text(d)})
            for t, d in sorted(snapshot.drift.items())
            if d != 0
        ]
        alerts += self.conditions.observe_set(AlertKind.DRIFT, drift, now)
        stuck = stuck_executions(snapshot.in_flight, now, self._stuck_after)
        alerts += self.conditions.observe_set(AlertKind.EXECUTION_STUCK, stuck, now)
        exposed = self._unhedged.check(snapshot.exposures, now)
        alerts += self.conditions.observe_set(AlertKind.UNHEDGED_TOO_LONG, exposed, now)
        self.sink.emit_all(alerts)
        return alerts

    def deep_reorg(self, depth: int, fork_block: int, now: datetime) -> list[Alert]:
        """Report a reorg; alerted only when deeper than 3 blocks."""
        finding = deep_reorg_finding(depth, fork_block)
        if finding is None:
            return []
        return self._one_shot(AlertKind.DEEP_REORG, finding, now)

    def late_event(
        self, tx_hash: str, log_index: int, block: int, ticker: str | None, now: datetime
    ) -> list[Alert]:
        """Report an event a backfill job found below the processed frontier (booked late)."""
        finding = Finding(
            key=f"{tx_hash}:{log_index}",
            message=(
                f"late event {tx_hash}:{log_index} at block {block}"
                + (f" ({ticker})" if ticker else "")
                + " booked after later ones"
            ),
            details={"tx_hash": tx_hash, "log_index": log_index, "block": block, "ticker": ticker},
        )
        return self._one_shot(AlertKind.LATE_EVENT, finding, now)

    def _one_shot(self, kind: AlertKind, finding: Finding, now: datetime) -> list[Alert]:
        alerts = self.conditions.observe(
            kind, finding.key, True, finding.message, now, details=finding.details
        )
        self.sink.emit_all(alerts)
        return alerts

    def beat(self, snapshot: HeartbeatSnapshot, monotonic_now: float) -> str | None:
        """Log the heartbeat line when one is due; returns it (None when not due)."""
        if not self._timer.due(monotonic_now):
            return None
        line = heartbeat_line(snapshot)
        logger.info(line)
        return line

    def backlog(self, pending_live_events: int, backfilling: bool) -> str | None:
        """Log the backlog warning when it is news; returns it."""
        warning = self._backlog.check(pending_live_events, backfilling)
        if warning is not None:
            logger.warning(warning)
        return warning
