"""Alert conditions (pure): de-duplication until cleared, one-shot kinds, and the time-based
evaluators with explicit ``now`` values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bot.ops.conditions import (
    CLEARED_FORM,
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

T0 = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def test_the_kinds_are_exactly_the_specs() -> None:
    lasting = {
        "paused",
        "parked",
        "stream_stale",
        "broker_unreachable",
        "broker_blocked",
        "drift",
        "execution_stuck",
        "unhedged_too_long",
    }
    assert {k.value for k in AlertKind} == (
        lasting | {"deep_reorg", "late_event"} | {f"{k}_cleared" for k in lasting}
    )
    assert {k.value: v.value for k, v in CLEARED_FORM.items()} == {
        k: f"{k}_cleared" for k in lasting
    }


def test_a_condition_alerts_once_until_it_clears_then_may_fire_again() -> None:
    conditions = Conditions()
    first = conditions.observe(
        AlertKind.PARKED, "AAPL", True, "AAPL parked", minutes(0), details={"ticker": "AAPL"}
    )
    assert first == [Alert(AlertKind.PARKED, "AAPL parked", minutes(0), "AAPL", {"ticker": "AAPL"})]
    for n in range(1, 4):
        assert conditions.observe(AlertKind.PARKED, "AAPL", True, "still", minutes(n)) == []
    assert conditions.is_active(AlertKind.PARKED, "AAPL")
    # another key of the same kind is its own condition
    other = conditions.observe(AlertKind.PARKED, "TSLA", True, "TSLA parked", minutes(4))
    assert [a.key for a in other] == ["TSLA"]
    cleared = conditions.observe(AlertKind.PARKED, "AAPL", False, "", minutes(5))
    assert cleared == [
        Alert(
            AlertKind.PARKED_CLEARED, "parked cleared: AAPL", minutes(5), "AAPL", {"ticker": "AAPL"}
        )
    ]
    assert cleared[0].is_cleared
    assert conditions.observe(AlertKind.PARKED, "AAPL", False, "", minutes(6)) == []
    again = conditions.observe(AlertKind.PARKED, "AAPL", True, "parked again", minutes(7))
    assert [(a.kind, a.message) for a in again] == [(AlertKind.PARKED, "parked again")]
    assert [a.key for a in conditions.active()] == ["TSLA", "AAPL"]


def test_clearing_what_never_fired_says_nothing() -> None:
    assert Conditions().observe(AlertKind.DRIFT, "AAPL", False, "no drift", minutes(0)) == []


def test_one_shot_kinds_fire_every_time_and_never_clear() -> None:
    conditions = Conditions()
    for n in range(3):
        alerts = conditions.observe(AlertKind.LATE_EVENT, "0xabc:1", True, "late", minutes(n))
        assert [a.kind for a in alerts] == [AlertKind.LATE_EVENT]
    assert conditions.observe(AlertKind.LATE_EVENT, "0xabc:1", False, "", minutes(4)) == []
    assert conditions.active() == []


def test_cleared_kinds_are_not_observed_directly() -> None:
    with pytest.raises(ValueError, match="not paused_cleared"):
        Conditions().observe(AlertKind.PAUSED_CLEARED, "", True, "x", minutes(0))


def test_observe_set_clears_keys_that_are_no_longer_reported() -> None:
    conditions = Conditions()
    both = [Finding("AAPL", "AAPL drift 1"), Finding("TSLA", "TSLA drift -2")]
    assert [a.key for a in conditions.observe_set(AlertKind.DRIFT, both, minutes(0))] == [
        "AAPL",
        "TSLA",
    ]
    assert conditions.observe_set(AlertKind.DRIFT, both, minutes(1)) == []
    conditions.observe(AlertKind.PARKED, "AAPL", True, "parked", minutes(1))
    left = conditions.observe_set(AlertKind.DRIFT, [Finding("TSLA", "x")], minutes(2))
    assert [(a.kind, a.key) for a in left] == [(AlertKind.DRIFT_CLEARED, "AAPL")]
    assert conditions.is_active(AlertKind.PARKED, "AAPL")  # other kinds are untouched


def test_alerts_need_aware_times_and_keep_their_fields() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Alert(AlertKind.PAUSED, "x", datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="override"):
        Alert(AlertKind.PAUSED, "x", T0, details={"kind": "other"})
    for bad in (Decimal("1.5"), 1.5, ["a"]):
        with pytest.raises(TypeError, match="'shares' must be"):
            Alert(AlertKind.DRIFT, "x", T0, details={"shares": bad})  # type: ignore[dict-item]
    assert Alert(AlertKind.DRIFT, "x", T0, details={"a": "1", "b": 2, "c": True, "d": None})


def test_deep_reorg_is_deeper_than_three_blocks() -> None:
    assert deep_reorg_finding(3, 100) is None
    finding = deep_reorg_finding(4, 100)
    assert finding is not None and finding.details == {"depth": 4, "block": 100}


def test_an_execution_is_stuck_after_more_than_ten_minutes_in_flight() -> None:
    in_flight = [
        InFlightExecution(1, "AAPL", minutes(0), Decimal("1.50")),
        InFlightExecution(2, "TSLA", minutes(5)),
    ]
    assert stuck_executions(in_flight, minutes(10)) == []  # exactly 10 minutes is not "more than"
    stuck = stuck_executions(in_flight, minutes(10) + timedelta(seconds=1))
    assert [f.key for f in stuck] == ["1"]
    assert stuck[0].details == {
        "ticker": "AAPL",
        "execution_id": 1,
        "in_flight_s": 601,
        "shares": "1.5",
    }
    assert [f.key for f in stuck_executions(in_flight, minutes(16))] == ["1", "2"]
    # the tracker turns it into one alert, and a cleared one when it is no longer in flight
    conditions = Conditions()
    raised = conditions.observe_set(AlertKind.EXECUTION_STUCK, stuck, minutes(11))
    assert [a.kind for a in raised] == [AlertKind.EXECUTION_STUCK]
    done = conditions.observe_set(
        AlertKind.EXECUTION_STUCK, stuck_executions([], minutes(12)), minutes(12)
    )
    assert [(a.kind, a.key) for a in done] == [(AlertKind.EXECUTION_STUCK_CLEARED, "1")]


def exposure(unhedged: str, *, market_open: bool = True, ticker: str = "AAPL") -> TickerExposure:
    return TickerExposure(ticker, Decimal(unhedged), Decimal(1), market_open)


def test_unhedged_too_long_needs_ten_minutes_at_or_above_the_threshold() -> None:
    watch = UnhedgedWatch()
    assert watch.check([exposure("-1")], minutes(0)) == []  # |-1| >= 1: the clock starts
    assert watch.since("AAPL") == minutes(0)
    assert watch.check([exposure("-1.2")], minutes(10)) == []
    found = watch.check([exposure("-1.2")], minutes(10.5))
    assert [f.key for f in found] == ["AAPL"]
    assert found[0].details == {
        "ticker": "AAPL",
        "unhedged_shares": "-1.2",
        "threshold_shares": "1",
        "since": "2026-12-01T15:00:00+00:00",
    }


def test_the_unhedged_clock_restarts_below_the_threshold() -> None:
    watch = UnhedgedWatch()
    watch.check([exposure("2")], minutes(0))
    watch.check([exposure("0.99")], minutes(6))  # dropped below: reset
    assert watch.since("AAPL") is None
    watch.check([exposure("2")], minutes(7))
    assert watch.check([exposure("2")], minutes(17)) == []  # 10 minutes since 7, not more
    assert [f.key for f in watch.check([exposure("2")], minutes(17.1))] == ["AAPL"]


def test_the_unhedged_clock_restarts_when_the_market_closes_or_the_ticker_is_gone() -> None:
    watch = UnhedgedWatch()
    watch.check([exposure("5"), exposure("5", ticker="TSLA")], minutes(0))
    watch.check([exposure("5", market_open=False), exposure("5", ticker="TSLA")], minutes(5))
    assert watch.since("AAPL") is None and watch.since("TSLA") == minutes(0)
    assert watch.check([exposure("5")], minutes(11)) == []  # TSLA not reported: reset too
    assert watch.since("TSLA") is None and watch.since("AAPL") == minutes(11)
    assert watch.check([exposure("5", market_open=False)], minutes(30)) == []
