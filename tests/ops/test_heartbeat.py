"""Heartbeat line format, its timer, and the backlog warning (pure)."""

from __future__ import annotations

import pytest

from bot.ops.heartbeat import BacklogWarning, HeartbeatSnapshot, HeartbeatTimer, heartbeat_line


def test_heartbeat_line_has_every_field_in_order() -> None:
    line = heartbeat_line(
        HeartbeatSnapshot(
            head_block=123,
            checkpoint_block=120,
            queue_pending=4,
            executions_in_flight=1,
            market_open=True,
        )
    )
    assert line == "heartbeat head=123 checkpoint=120 lag=3 pending=4 in_flight=1 market=open"


def test_heartbeat_line_before_anything_is_known() -> None:
    line = heartbeat_line(HeartbeatSnapshot(None, None, 0, 0, None))
    assert line == "heartbeat head=- checkpoint=- lag=- pending=0 in_flight=0 market=-"
    closed = heartbeat_line(HeartbeatSnapshot(10, 12, 0, 0, False))
    assert closed.endswith("lag=0 pending=0 in_flight=0 market=closed")  # never a negative lag


def test_heartbeat_timer_fires_once_per_interval() -> None:
    timer = HeartbeatTimer(60)
    beats = [t for t in (0.0, 1.0, 59.9, 60.0, 61.0, 200.0, 259.0, 260.0) if timer.due(t)]
    assert beats == [0.0, 60.0, 200.0, 260.0]
    with pytest.raises(ValueError):
        HeartbeatTimer(0)


def test_backlog_warning_once_until_it_drops() -> None:
    rule = BacklogWarning(10_000)
    assert rule.check(10_000, backfilling=True) is None  # at the limit: not beyond it
    warning = rule.check(10_001, backfilling=True)
    assert warning is not None and "10001 live events" in warning and "10000" in warning
    assert rule.check(15_000, backfilling=True) is None  # still high: said once
    assert rule.check(9_000, backfilling=True) is None  # dropped: re-armed
    assert rule.check(12_000, backfilling=True) is not None
    assert rule.check(50_000, backfilling=False) is None  # no backfill: live events flow
    assert rule.check(12_000, backfilling=True) is not None  # a new backfill, high again
    with pytest.raises(ValueError):
        BacklogWarning(0)


def test_backlog_warning_default_is_the_specs() -> None:
    rule = BacklogWarning()
    assert rule.check(10_000, backfilling=True) is None
    assert rule.check(10_001, backfilling=True) is not None
