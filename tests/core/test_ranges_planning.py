"""Window planning: a small range split over the workers, windows sized by logs per answer."""

from __future__ import annotations

import itertools

import pytest

from bot.core.ranges import (
    Action,
    BlockRange,
    Classified,
    LogDensity,
    SpanPolicy,
    WindowPlan,
    even_span,
)


@pytest.mark.parametrize(
    ("blocks", "parts", "span"),
    [
        (2070, 8, 259),  # the range: 8 windows, not 3 of 1,000 blocks
        (2008, 8, 251),
        (8, 8, 1),
        (3, 8, 1),  # never below one block (then fewer windows than workers)
        (1, 1, 1),
        (1000, 1, 1000),
        (0, 8, 1),
        (10, 0, 10),  # no workers is treated as one
    ],
)
def test_even_span(blocks: int, parts: int, span: int) -> None:
    assert even_span(blocks, parts) == span


@pytest.mark.parametrize("blocks", [1, 7, 100, 2070, 99_999])
@pytest.mark.parametrize("parts", [1, 3, 8])
def test_even_span_gives_every_part_a_window(blocks: int, parts: int) -> None:
    span = even_span(blocks, parts)
    windows = -(-blocks // span)
    assert windows == min(blocks, parts) or (windows <= parts and span == 1)
    assert windows * span >= blocks and (windows - 1) * span < blocks


def test_density_knows_nothing_before_an_answer() -> None:
    density = LogDensity(5000)
    assert density.span() is None and density.answers == 0


def test_density_proposes_no_limit_while_only_empty_windows_are_seen() -> None:
    density = LogDensity(5000)
    for _ in range(3):
        density.observe(1000, 0)
    assert density.span() is None  # an empty history is read in the widest windows


def test_density_sizes_windows_to_the_target() -> None:
    density = LogDensity(5000)
    density.observe(1000, 20_000)  # 20 logs a block
    assert density.span() == 250
    density.observe(250, 5000)
    assert density.span() == 250


def test_density_follows_a_denser_stretch_quickly() -> None:
    density = LogDensity(1000)
    density.observe(1000, 100)  # sparse: 0.1 a block
    assert density.span() == 10_000
    density.observe(1000, 10_000)  # then 10 a block: within 1.5x of the target at once
    spans = [density.span()]
    for _ in range(6):
        density.observe(100, 1000)
        spans.append(density.span())
    assert all(span is not None and span <= 150 for span in spans)
    assert spans == sorted(spans, reverse=True)
    assert spans[-1] is not None and spans[-1] <= 105


def test_density_never_proposes_below_one_block() -> None:
    density = LogDensity(10)
    density.observe(1, 5000)
    assert density.span() == 1


def test_density_rejects_a_zero_target() -> None:
    with pytest.raises(ValueError):
        LogDensity(0)


def windows_of(plan: WindowPlan) -> list[BlockRange]:
    out = []
    while (window := plan.next()) is not None:
        out.append(window)
    return out


def test_a_small_range_is_shared_by_every_worker() -> None:
    density = LogDensity(5000)
    density.observe(100, 10)  # known from an earlier pass: no probe
    plan = WindowPlan(BlockRange(7, 2076), SpanPolicy(1000), density, parts=8)
    windows = windows_of(plan)
    assert len(windows) == 8 and not plan.long and not plan.probe
    assert windows[0].start == 7 and windows[-1].end == 2076
    assert all(b.start == a.end + 1 for a, b in itertools.pairwise(windows))


def test_a_small_range_of_unknown_density_is_probed_with_a_slice_then_shared() -> None:
    plan = WindowPlan(BlockRange(7, 2076), SpanPolicy(1000), LogDensity(5000), parts=8)
    assert plan.probe and not plan.long
    windows = windows_of(plan)
    assert windows[0] == BlockRange(7, 38)  # a slice of one share (259 // 8 blocks)
    rest = windows[1:]
    assert len(rest) == 8  # the rest shared again among the 8
    assert rest[0].start == 39 and rest[-1].end == 2076
    assert all(b.start == a.end + 1 for a, b in itertools.pairwise(windows))


def test_one_worker_never_probes() -> None:
    plan = WindowPlan(BlockRange(0, 499), SpanPolicy(1000), LogDensity(5000), parts=1)
    assert not plan.probe and windows_of(plan) == [BlockRange(0, 499)]


def test_a_long_range_uses_the_policy_span_and_its_growth() -> None:
    policy = SpanPolicy(1000, grow_after=1)
    plan = WindowPlan(BlockRange(0, 99_999), policy, LogDensity(5000), parts=8)
    assert plan.long and plan.probe
    first = plan.next()
    assert first == BlockRange(0, 999)  # a long range's probe is its first window
    policy.on_failure(BlockRange(1000, 1999), Classified(Action.SHRINK))  # span 500
    assert plan.next() == BlockRange(1000, 1499)
    policy.on_success()  # grows back (SPEC §6): the plan follows
    assert plan.next() == BlockRange(1500, 2499)


def test_a_learned_cap_holds_for_new_windows_and_remainders() -> None:
    policy = SpanPolicy(1000)
    plan = WindowPlan(BlockRange(0, 9_999), policy, LogDensity(5000), parts=2)
    failed = plan.next()
    assert failed == BlockRange(0, 999)
    decision = policy.on_failure(failed, Classified(Action.CAP, max_span_blocks=300))
    assert decision.remainder is not None
    plan.requeue(decision.remainder)
    assert plan.next() == BlockRange(300, 599)  # the remainder first, trimmed to the cap
    assert plan.next() == BlockRange(600, 899)
    assert plan.next() == BlockRange(900, 999)
    assert plan.next() == BlockRange(1000, 1299)


def test_a_dense_chain_gets_windows_of_the_target_logs() -> None:
    density = LogDensity(5000)
    plan = WindowPlan(BlockRange(0, 99_999), SpanPolicy(1000), density, parts=8)
    assert plan.next() == BlockRange(0, 999)
    density.observe(1000, 20_000)
    assert plan.next() == BlockRange(1000, 1249)


def test_every_block_is_handed_out_once() -> None:
    plan = WindowPlan(BlockRange(5, 5), SpanPolicy(1000), LogDensity(10), parts=8)
    assert windows_of(plan) == [BlockRange(5, 5)]
