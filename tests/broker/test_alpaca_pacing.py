"""The sliding-window limiter, on a hand-driven clock (no sleeping)."""

from __future__ import annotations

import pytest

from bot.broker.alpaca.pacing import SlidingWindowLimiter


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _filled(limiter: SlidingWindowLimiter, count: int) -> None:
    for _ in range(count):
        limiter.record()


def test_reads_keep_a_fifth_of_the_window_for_placements() -> None:
    clock = ManualClock()
    limiter = SlidingWindowLimiter(200, clock=clock)
    assert limiter.reserve == 40
    _filled(limiter, 159)
    assert limiter.delay(placement=False) == 0.0
    limiter.record()  # 160 in the window: reads wait, placements still go
    assert limiter.delay(placement=False) == pytest.approx(60.0)
    assert limiter.delay(placement=True) == 0.0
    _filled(limiter, 40)  # 200: the window is full for everyone
    assert limiter.delay(placement=True) == pytest.approx(60.0)
    assert limiter.in_window() == 200


def test_the_wait_ends_when_enough_requests_leave_the_window() -> None:
    clock = ManualClock()
    limiter = SlidingWindowLimiter(10, window_s=60.0, clock=clock)
    assert limiter.reserve == 2
    for _ in range(10):  # one request every 5 s: t = 1000, 1005, ..., 1045
        limiter.record()
        clock.now += 5.0
    # now = 1050; reads may use 8 slots: 3 must leave (the last of them was sent at 1010).
    assert limiter.delay(placement=False) == pytest.approx(20.0)
    # placements may use 10: 1 must leave (sent at 1000).
    assert limiter.delay(placement=True) == pytest.approx(10.0)
    clock.now = 1060.0  # the request of t=1000 has left the window
    assert limiter.delay(placement=True) == 0.0
    assert limiter.in_window() == 9
    clock.now = 1070.0
    assert limiter.delay(placement=False) == 0.0
    assert limiter.in_window() == 7


def test_a_tiny_budget_still_lets_reads_through() -> None:
    clock = ManualClock()
    limiter = SlidingWindowLimiter(1, clock=clock)
    assert limiter.reserve == 0
    assert limiter.delay(placement=False) == 0.0
    limiter.record()
    assert limiter.delay(placement=False) == pytest.approx(60.0)
    with pytest.raises(ValueError, match="at least 1"):
        SlidingWindowLimiter(0)
