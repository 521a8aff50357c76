"""Retry timing (pure): exponential backoff with full jitter that honours ``Retry-After``, and a
per-endpoint circuit breaker with an injected clock.

The wait generator plugs into the ``backoff`` library (``backoff.on_exception(wait_gen=…,
jitter=None)``): ``backoff`` sends each caught exception into it, so a ``TransientError`` that
carries ``retry_after_s`` is never retried sooner than the server asked.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator
from enum import StrEnum
from typing import Any

from bot.errors import TransientError

RETRY_AFTER_LIMIT_S = 300.0
"""A Retry-After longer than this is treated as this (a misconfigured server must not park us)."""


def delay_s(
    attempt: int,
    *,
    base_s: float,
    max_s: float,
    retry_after_s: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Full-jitter exponential delay for ``attempt`` (1-based), at least ``retry_after_s``."""
    ceiling = min(max_s, base_s * 2.0 ** max(0, attempt - 1))
    jittered = ceiling * rand()
    if retry_after_s is not None:
        return max(jittered, min(retry_after_s, RETRY_AFTER_LIMIT_S))
    return jittered


def expo_with_retry_after(base_s: float = 0.25, max_s: float = 10.0) -> Generator[float, Any, None]:
    """A ``backoff`` wait generator: jittered exponential, floored at the error's Retry-After."""
    sent = yield 0.0  # backoff primes the generator with one empty send
    attempt = 0
    while True:
        attempt += 1
        retry_after = sent.retry_after_s if isinstance(sent, TransientError) else None
        sent = yield delay_s(attempt, base_s=base_s, max_s=max_s, retry_after_s=retry_after)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Opens after ``failures`` consecutive failures; half-opens ``reset_s`` later for one trial.

    A success closes it; a failure while half-open opens it again for another ``reset_s``.
    """

    def __init__(self, failures: int, reset_s: float, clock: Callable[[], float]) -> None:
        if failures < 1 or reset_s <= 0:
            raise ValueError("breaker needs failures >= 1 and reset_s > 0")
        self._threshold = failures
        self._reset_s = reset_s
        self._clock = clock
        self._consecutive = 0
        self._opened_at: float | None = None
        self._trial_out = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self._reset_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def wait_s(self) -> float:
        """Seconds until a request may be sent (0 when it may be sent now)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return 0.0
        if state is BreakerState.HALF_OPEN:
            return self._reset_s if self._trial_out else 0.0
        assert self._opened_at is not None
        return max(0.0, self._opened_at + self._reset_s - self._clock())

    def acquire(self) -> bool:
        """Take permission to send one request now (marks the half-open trial as taken)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._trial_out:
            self._trial_out = True
            return True
        return False

    def record_success(self) -> None:
        self._consecutive = 0
        self._opened_at = None
        self._trial_out = False

    def record_failure(self) -> None:
        self._consecutive += 1
        if self._trial_out or self._consecutive >= self._threshold:
            self._opened_at = self._clock()
            self._trial_out = False
