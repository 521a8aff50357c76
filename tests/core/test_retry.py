"""Backoff timing and the circuit breaker, with injected randomness and clock."""

from __future__ import annotations

import pytest

from bot.core.retry import BreakerState, CircuitBreaker, delay_s, expo_with_retry_after
from bot.errors import TransientError


def test_delay_grows_exponentially_up_to_the_cap() -> None:
    ceilings = [delay_s(n, base_s=0.5, max_s=4, rand=lambda: 1.0) for n in range(1, 7)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_delay_is_fully_jittered() -> None:
    assert delay_s(3, base_s=1, max_s=100, rand=lambda: 0.25) == 1.0
    assert delay_s(3, base_s=1, max_s=100, rand=lambda: 0.0) == 0.0


def test_retry_after_is_a_floor() -> None:
    assert delay_s(1, base_s=0.1, max_s=1, retry_after_s=3, rand=lambda: 0.5) == 3


def test_wait_generator_reads_retry_after_from_the_exception() -> None:
    gen = expo_with_retry_after(base_s=0.01, max_s=0.02)
    gen.send(None)
    assert gen.send(TransientError("slow down", retry_after_s=2.5)) == 2.5
    assert gen.send(TransientError("again")) <= 0.02
    assert gen.send(ValueError("not transient")) <= 0.02


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_consecutive_failures_and_half_opens_for_one_trial() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=3, reset_s=10, clock=clock)
    for _ in range(2):
        assert breaker.acquire()
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.acquire()
    assert breaker.wait_s() == 10
    clock.now += 9.5
    assert breaker.wait_s() == pytest.approx(0.5)
    clock.now += 0.5
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.acquire()  # the one trial
    assert not breaker.acquire()  # nobody else while the trial is out
    breaker.record_failure()  # trial failed: open again for a full period
    assert breaker.state is BreakerState.OPEN
    clock.now += 10
    assert breaker.acquire()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.acquire()


def test_a_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker(failures=2, reset_s=1, clock=Clock())
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED


def test_breaker_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="failures >= 1"):
        CircuitBreaker(failures=0, reset_s=1, clock=Clock())
