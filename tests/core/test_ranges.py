"""Range planning: every real provider answer in the fixture table, and the window policy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.core.ranges import (
    Action,
    BlockRange,
    Classified,
    OversizedBlockError,
    SpanPolicy,
    classify,
)

CASES: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent.parent / "fixtures" / "getlogs_errors.json").read_text()
)["cases"]


@pytest.mark.parametrize("case", CASES, ids=[f"{c['provider']}-{c['action']}" for c in CASES])
def test_fixture_answers_are_classified_by_message(case: dict[str, Any]) -> None:
    result = classify(case["message"], code=case.get("code"), http_status=case.get("http_status"))
    assert result.action == Action(case["action"])
    if case["action"] == "use_range":
        assert result.suggested == BlockRange(*case["range"])
    if case["action"] == "cap":
        assert result.max_span_blocks == case["max_span_blocks"]


@pytest.mark.parametrize("case", CASES, ids=[f"{c['provider']}-{c['action']}" for c in CASES])
def test_policy_answer_to_each_fixture(case: dict[str, Any]) -> None:
    """What the planner requests next after each real answer to a 5000-block request."""
    policy = SpanPolicy(5000)
    action = Action(case["action"])
    if action is Action.USE_RANGE:
        start = case["range"][0]
        request = BlockRange(start, start + 4999)
    else:
        request = BlockRange(100, 5099)
    decision = policy.on_failure(
        request, classify(case["message"], http_status=case.get("http_status"))
    )
    covered = [decision.retry] + ([decision.remainder] if decision.remainder else [])
    # coverage stays whole: retry + remainder are exactly the request, in order
    assert covered[0].start == request.start
    assert covered[-1].end == request.end
    if len(covered) == 2:
        assert covered[0].end + 1 == covered[1].start
    if action is Action.USE_RANGE:
        assert decision.retry == BlockRange(*case["range"])
        assert not decision.back_off
    elif action is Action.CAP:
        cap = case["max_span_blocks"]
        assert decision.retry.span == min(cap, request.span) or decision.retry.span < request.span
        assert policy.window(0, 10**9).span <= cap
        assert not decision.back_off
    elif action is Action.SHRINK:
        assert decision.retry.span < request.span
        assert not decision.back_off
    else:  # wait, rate_limit, retry: the same range, after a delay, never split
        assert decision.retry == request
        assert decision.remainder is None
        assert decision.back_off


def test_cap_remembers_the_smallest_seen_and_growth_never_passes_it() -> None:
    policy = SpanPolicy(1000, grow_after=1)
    policy.on_failure(BlockRange(0, 999), Classified(Action.CAP, max_span_blocks=800))
    policy.on_failure(BlockRange(0, 799), Classified(Action.CAP, max_span_blocks=500))
    policy.on_failure(BlockRange(0, 499), Classified(Action.CAP, max_span_blocks=2000))
    for _ in range(10):
        policy.on_success()
    assert policy.cap == 500
    assert policy.window(0, 10_000) == BlockRange(0, 499)


def test_shrink_halves_then_grows_back_to_target_after_successes() -> None:
    policy = SpanPolicy(1000, grow_after=2)
    decision = policy.on_failure(BlockRange(0, 999), Classified(Action.SHRINK))
    assert decision.retry == BlockRange(0, 499)
    assert decision.remainder == BlockRange(500, 999)
    assert policy.window(500, 10_000) == BlockRange(500, 999)
    assert policy.limit() == 500
    policy.on_success()
    assert policy.limit() == 500
    policy.on_success()
    assert policy.limit() == 1000
    for _ in range(10):
        policy.on_success()
    assert policy.limit() == 1000


def test_suggestion_equal_to_request_or_invalid_is_bisected() -> None:
    policy = SpanPolicy(1000)
    request = BlockRange(10, 19)
    same = policy.on_failure(request, Classified(Action.USE_RANGE, suggested=request))
    assert same.retry == BlockRange(10, 14)
    elsewhere = policy.on_failure(
        BlockRange(10, 19), Classified(Action.USE_RANGE, suggested=BlockRange(3, 5))
    )
    assert elsewhere.retry == BlockRange(10, 14)


def test_single_block_that_still_overflows_is_loud() -> None:
    with pytest.raises(OversizedBlockError, match="block 42"):
        SpanPolicy(10).on_failure(BlockRange(42, 42), Classified(Action.SHRINK))


def test_window_is_bounded_by_last_block() -> None:
    assert SpanPolicy(1000).window(95, 100) == BlockRange(95, 100)


@pytest.mark.parametrize(("start", "end"), [(-1, 3), (5, 4)])
def test_invalid_block_range(start: int, end: int) -> None:
    with pytest.raises(ValueError, match="invalid block range"):
        BlockRange(start, end)


def test_anvil_answers_past_the_head_mean_wait() -> None:
    message = "BlockOutOfRangeError: block height is 1 but requested was 256"
    assert classify(message, code=-32602).action is Action.WAIT
    assert classify("unknown block", code=-32000).action is Action.WAIT
