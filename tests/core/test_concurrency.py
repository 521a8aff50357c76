"""AIMD concurrency of the backfill workers: halve on a rate limit, grow back by one."""

from __future__ import annotations

import pytest

from bot.core.concurrency import ConcurrencyLimit


def test_starts_at_the_maximum() -> None:
    limit = ConcurrencyLimit(8)
    assert (limit.limit, limit.maximum, limit.lowest, limit.epoch) == (8, 8, 8, 0)


def test_a_rate_limit_halves_and_never_goes_below_one() -> None:
    limit = ConcurrencyLimit(8)
    seen = []
    for _ in range(5):
        limit.on_rate_limit(limit.epoch)  # each sent after the last cut
        seen.append(limit.limit)
    assert seen == [4, 2, 1, 1, 1]
    assert (limit.lowest, limit.cuts) == (1, 3)


def test_odd_limits_halve_down() -> None:
    limit = ConcurrencyLimit(7)
    assert limit.on_rate_limit(0) and limit.limit == 3


def test_one_congestion_event_cuts_once() -> None:
    """Eight requests in flight are rate-limited together: one halving, not three."""
    limit = ConcurrencyLimit(8)
    sent_in = limit.epoch
    results = [limit.on_rate_limit(sent_in) for _ in range(8)]
    assert results == [True] + [False] * 7
    assert limit.limit == 4
    # a request sent under the new limit that is rate-limited again cuts again
    assert limit.on_rate_limit(limit.epoch) and limit.limit == 2


def test_grows_back_by_one_after_a_streak_up_to_the_maximum() -> None:
    limit = ConcurrencyLimit(4, grow_after=3)
    limit.on_rate_limit(0)
    limit.on_rate_limit(limit.epoch)
    assert limit.limit == 1
    grown = [limit.on_success() for _ in range(12)]
    assert grown == [False, False, True] * 3 + [False] * 3  # 1 -> 2 -> 3 -> 4, then capped
    assert limit.limit == 4 and limit.raises == 3


def test_a_rate_limit_breaks_the_streak_even_when_it_does_not_cut() -> None:
    limit = ConcurrencyLimit(4, grow_after=2)
    limit.on_rate_limit(0)  # 2, epoch 1
    assert not limit.on_success()
    assert not limit.on_rate_limit(0)  # an old request: no cut, but the streak starts over
    assert limit.limit == 2
    assert not limit.on_success()
    assert limit.on_success() and limit.limit == 3


def test_no_growth_at_the_maximum() -> None:
    limit = ConcurrencyLimit(2, grow_after=1)
    assert not any(limit.on_success() for _ in range(5))
    assert limit.limit == 2 and limit.raises == 0


@pytest.mark.parametrize(("maximum", "grow_after"), [(0, 1), (1, 0)])
def test_rejects_nonsense(maximum: int, grow_after: int) -> None:
    with pytest.raises(ValueError):
        ConcurrencyLimit(maximum, grow_after=grow_after)
