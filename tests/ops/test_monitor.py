"""OpsMonitor: snapshots on successive ticks become exactly the alerts that are news."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from loguru import logger

from bot.ops.alerts import AlertSink
from bot.ops.conditions import Alert, AlertKind, InFlightExecution, TickerExposure
from bot.ops.heartbeat import HeartbeatSnapshot
from bot.ops.monitor import OpsMonitor, OpsSnapshot

T0 = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def kinds(alerts: list[Alert]) -> list[tuple[str, str]]:
    return [(a.kind.value, a.key) for a in alerts]


def test_ticks_emit_only_changes() -> None:
    sink = AlertSink("")
    monitor = OpsMonitor(sink)
    assert monitor.tick(OpsSnapshot(now=at(0))) == []
    busy = OpsSnapshot(
        now=at(1),
        paused_reason="outcome unknown for execution 4",
        parked={"TSLA": "3 rejections"},
        stream_stale="no head for 75 s",
        broker_unreachable="ClientConnectorError",
        broker_blocked="account trading_blocked",
        drift={"AAPL": Decimal("-0.5"), "MSFT": Decimal(0)},
        in_flight=[InFlightExecution(4, "AAPL", at(-10), Decimal(2))],
        exposures=[TickerExposure("NVDA", Decimal(3), Decimal(1), True)],
    )
    first = monitor.tick(busy)
    assert kinds(first) == [
        ("paused", ""),
        ("stream_stale", ""),
        ("broker_unreachable", ""),
        ("broker_blocked", ""),
        ("parked", "TSLA"),
        ("drift", "AAPL"),
        ("execution_stuck", "4"),
    ]
    assert first[0].details == {"reason": "outcome unknown for execution 4"}
    assert first[5].details == {"ticker": "AAPL", "drift_shares": "-0.5"}
    assert monitor.tick(busy) == []  # the same state again: nothing new
    later = OpsSnapshot(
        now=at(12),
        paused_reason="outcome unknown for execution 4",
        in_flight=busy.in_flight,
        exposures=busy.exposures,
    )
    assert kinds(monitor.tick(later)) == [
        ("stream_stale_cleared", ""),
        ("broker_unreachable_cleared", ""),
        ("broker_blocked_cleared", ""),
        ("parked_cleared", "TSLA"),
        ("drift_cleared", "AAPL"),
        ("unhedged_too_long", "NVDA"),  # exposed since minute 1, more than 10 minutes now
    ]
    assert kinds(monitor.tick(OpsSnapshot(now=at(13)))) == [
        ("paused_cleared", ""),
        ("execution_stuck_cleared", "4"),
        ("unhedged_too_long_cleared", "NVDA"),
    ]
    assert monitor.conditions.active() == []
    assert len(sink.last_alerts(100)) == 7 + 6 + 3


def test_one_shot_reports() -> None:
    monitor = OpsMonitor(AlertSink(""))
    assert monitor.deep_reorg(3, 100, at(0)) == []
    assert kinds(monitor.deep_reorg(5, 100, at(0))) == [("deep_reorg", "100:5")]
    assert kinds(monitor.deep_reorg(5, 100, at(1))) == [("deep_reorg", "100:5")]
    late = monitor.late_event("0xab", 2, 77, "AAPL", at(2))
    assert kinds(late) == [("late_event", "0xab:2")]
    assert late[0].details == {"tx_hash": "0xab", "log_index": 2, "block": 77, "ticker": "AAPL"}
    assert AlertKind.LATE_EVENT in {a.kind for a in monitor.sink.last_alerts()}


def test_heartbeat_and_backlog_are_logged_once() -> None:
    lines: list[tuple[str, str]] = []
    handle = logger.add(lambda m: lines.append((m.record["level"].name, m.record["message"])))
    monitor = OpsMonitor(AlertSink(""), heartbeat_interval_s=60, backlog_warn=5)
    snap = HeartbeatSnapshot(10, 8, 0, 0, False)
    try:
        beats = [monitor.beat(snap, t) for t in (0.0, 30.0, 60.0)]
        warnings = [monitor.backlog(n, backfilling=True) for n in (6, 7, 2, 9)]
    finally:
        logger.remove(handle)
    assert [b is not None for b in beats] == [True, False, True]
    assert [w is not None for w in warnings] == [True, False, False, True]
    assert [level for level, _ in lines] == ["INFO", "INFO", "WARNING", "WARNING"]
    assert lines[0][1] == "heartbeat head=10 checkpoint=8 lag=2 pending=0 in_flight=0 market=closed"
