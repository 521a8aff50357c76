"""``eth_getLogs`` range planning (pure): error classification and the adaptive window policy.

Providers answer an oversized request in many ways and the JSON-RPC code does not tell them apart
(-32005 means three different things at different providers), so errors are classified by their
message text (SPEC §6). The fixture table of real answers lives in
``tests/fixtures/getlogs_errors.json``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from bot.errors import OversizedBlockError


@dataclass(frozen=True, slots=True)
class BlockRange:
    """Blocks ``start`` to ``end``, both inclusive."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if self.start < 0 or self.end < self.start:
            raise ValueError(f"invalid block range {self.start}-{self.end}")

    @property
    def span(self) -> int:
        return self.end - self.start + 1

    def head(self, span: int) -> BlockRange:
        """The first ``span`` blocks of this range (all of it if it is shorter)."""
        return BlockRange(self.start, min(self.end, self.start + max(1, span) - 1))

    def after(self, other: BlockRange) -> BlockRange | None:
        """What is left of this range after ``other`` (a prefix of it), or None."""
        return BlockRange(other.end + 1, self.end) if other.end < self.end else None

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


class Action(StrEnum):
    USE_RANGE = "use_range"  # the message suggests a range: use it
    CAP = "cap"  # a fixed per-provider limit on the span: remember it
    SHRINK = "shrink"  # too many results: shrink this range now, no sleep
    WAIT = "wait"  # the node has not got that block yet: same range, later
    RATE_LIMIT = "rate_limit"  # slow down and back off; do not split
    RETRY = "retry"  # transient: back off and retry the same range


@dataclass(frozen=True, slots=True)
class Classified:
    action: Action
    suggested: BlockRange | None = None
    max_span_blocks: int | None = None


_NUMBER = r"(0x[0-9a-fA-F]+|[\d,]+)"
_SUGGESTIONS = (
    re.compile(rf"\[\s*{_NUMBER}\s*,\s*{_NUMBER}\s*\]"),
    re.compile(rf"range\s+{_NUMBER}\s*-\s*{_NUMBER}", re.IGNORECASE),
)
_CAPS = (
    re.compile(rf"limited to an? {_NUMBER}\s*(?:block)?\s*range", re.IGNORECASE),
    re.compile(rf"maximum is set to {_NUMBER}", re.IGNORECASE),
    re.compile(rf"max(?:imum)? (?:block )?range:?\s*{_NUMBER}", re.IGNORECASE),
    re.compile(rf"maximum allowed number of requested blocks is {_NUMBER}", re.IGNORECASE),
    re.compile(rf"at most {_NUMBER} blocks", re.IGNORECASE),
    re.compile(rf"block range (?:limit|is limited to) (?:of )?{_NUMBER}", re.IGNORECASE),
)
_SHRINK = re.compile(
    r"too (?:wide|large|big)|more than [\d,]+ results|exceeds (?:the )?(?:max|limit)"
    r"|response size|too many (?:results|logs)|result set",
    re.IGNORECASE,
)
_WAIT = re.compile(
    r"beyond current head|header not found|does not have the requested block"
    r"|unknown block|block not found|after last accepted block|not yet available"
    r"|blockoutofrange|but requested was",
    re.IGNORECASE,
)
_RATE = re.compile(
    r"rate.?limit|too many requests|request count exceeded|exceeded .*capacity|throttl",
    re.IGNORECASE,
)


def _number(text: str) -> int:
    return int(text, 16) if text.lower().startswith("0x") else int(text.replace(",", ""))


def classify(
    message: str, *, code: int | None = None, http_status: int | None = None
) -> Classified:
    """What to do about one failed ``eth_getLogs``, decided by the message text first."""
    del code  # deliberately unused: codes are ambiguous across providers
    if http_status == 429:
        return Classified(Action.RATE_LIMIT)
    for pattern in _SUGGESTIONS:
        match = pattern.search(message)
        if match:
            start, end = _number(match.group(1)), _number(match.group(2))
            if 0 <= start <= end:
                return Classified(Action.USE_RANGE, suggested=BlockRange(start, end))
    for pattern in _CAPS:
        match = pattern.search(message)
        if match and _number(match.group(1)) >= 1:
            return Classified(Action.CAP, max_span_blocks=_number(match.group(1)))
    if _RATE.search(message):
        return Classified(Action.RATE_LIMIT)
    if _SHRINK.search(message):
        return Classified(Action.SHRINK)
    if _WAIT.search(message):
        return Classified(Action.WAIT)
    return Classified(Action.RETRY)


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to a failed window: what to request next, and whether to back off first."""

    retry: BlockRange
    remainder: BlockRange | None  # to be queued as a window of its own (coverage stays whole)
    back_off: bool


class SpanPolicy:
    """The adaptive window size of one provider (SPEC §6).

    Starts at ``target`` blocks, shrinks on oversized answers, remembers a fixed provider cap
    (the smallest ``max_span_blocks`` seen), and grows back by doubling after
    ``grow_after`` successes in a row, never past the target or the cap.
    """

    def __init__(self, target: int, *, grow_after: int = 3) -> None:
        if target < 1:
            raise ValueError("target span must be >= 1")
        self.target = target
        self.cap: int | None = None
        self.span = target
        self._grow_after = grow_after
        self._streak = 0

    def limit(self) -> int:
        return min(self.span, self.cap) if self.cap is not None else self.span

    def window(self, start: int, last: int) -> BlockRange:
        """The next window from ``start``, at most up to ``last``."""
        return BlockRange(start, min(last, start + self.limit() - 1))

    def on_success(self) -> None:
        self._streak += 1
        if self._streak >= self._grow_after and self.span < self.target:
            self.span = min(self.target, self.span * 2)
            self._streak = 0

    def on_failure(self, request: BlockRange, classified: Classified) -> Decision:
        self._streak = 0
        action = classified.action
        if action is Action.USE_RANGE:
            suggested = classified.suggested
            usable = (
                suggested is not None
                and suggested.start == request.start
                and suggested.end < request.end
            )
            if usable and suggested is not None:
                self.span = min(self.span, suggested.span)
                return Decision(suggested, request.after(suggested), back_off=False)
            return self._halve(request)
        if action is Action.CAP:
            cap = classified.max_span_blocks or 1
            self.cap = cap if self.cap is None else min(self.cap, cap)
            if request.span <= self.cap:
                # the provider's number did not fit this request: fall back to halving
                return self._halve(request)
            first = request.head(self.cap)
            return Decision(first, request.after(first), back_off=False)
        if action is Action.SHRINK:
            return self._halve(request)
        return Decision(request, None, back_off=True)

    def _halve(self, request: BlockRange) -> Decision:
        if request.span == 1:
            raise OversizedBlockError(
                f"the logs of block {request.start} alone are too large for this provider; "
                "use a provider with a larger response limit (a block is never skipped)"
            )
        first = request.head(request.span // 2)
        self.span = min(self.span, first.span)
        return Decision(first, request.after(first), back_off=False)


def even_span(blocks: int, parts: int) -> int:
    """The window span that cuts ``blocks`` into at least ``parts`` windows: ``ceil(blocks /
    parts)``, never below 1. A range of a few windows would otherwise leave workers idle."""
    return max(1, -(-blocks // max(1, parts)))


class LogDensity:
    """Window spans sized by the number of logs one answer should hold (pure).

    A window of a fixed number of blocks holds anything from nothing to tens of thousands of
    logs; one huge answer is held whole (its text, then its logs) by the worker that fetched it.
    This estimates the logs per block from the answers seen (a sum that halves with each answer,
    so a denser stretch is noticed within an answer or two) and proposes the span that would
    hold ``target_logs``. It only ever lowers the span the range policy allows: where no log was
    seen yet it proposes nothing (``None``), so an empty history is read in the widest windows.
    """

    def __init__(self, target_logs: int) -> None:
        if target_logs < 1:
            raise ValueError("target_logs must be >= 1")
        self.target_logs = target_logs
        self.answers = 0
        self._logs = 0
        self._blocks = 0

    def observe(self, blocks: int, logs: int) -> None:
        """One answer: ``logs`` logs over ``blocks`` blocks."""
        self.answers += 1
        self._logs = self._logs // 2 + logs
        self._blocks = self._blocks // 2 + max(1, blocks)

    def span(self) -> int | None:
        """The span whose answer would hold about ``target_logs`` (>= 1), or None: no limit."""
        if self._logs == 0:
            return None
        return max(1, self.target_logs * self._blocks // self._logs)


class WindowPlan:
    """The windows of one range, in order of their start (pure).

    Each window is as wide as the provider's policy allows now (its learned cap included), at
    most an even share of the range among ``parts`` workers (so that a small range keeps every
    worker busy), and at most what :class:`LogDensity` says holds its target of logs.
    Remainders of windows split after an error (:meth:`requeue`) go out first, trimmed to the
    span allowed now, so coverage stays whole.

    While the density of the chain is unknown and several workers share the range, the first
    window is a *probe* (:attr:`probe`: fetch it alone, then the rest): without it the first
    wave is ``parts`` windows of unknown size, all held at once. On a long range the probe is
    simply the first window; on a small one it is a slice of one share (``share // parts``
    blocks, so it costs little time), and the rest of the range is shared again after it.
    """

    def __init__(
        self, whole: BlockRange, policy: SpanPolicy, density: LogDensity, *, parts: int
    ) -> None:
        self.whole = whole
        self._policy = policy
        self._density = density
        self._share = even_span(whole.span, parts)
        self._parts = max(1, parts)
        self._next_start = whole.start
        self._pending: list[BlockRange] = []
        self.long = whole.span > policy.limit() * self._parts  # more than one wave of windows
        self.probe = density.answers == 0 and self._parts > 1
        self._reshare = False

    def span(self) -> int:
        span = min(self._policy.limit(), self._share)
        by_logs = self._density.span()
        return span if by_logs is None else min(span, by_logs)

    def next(self) -> BlockRange | None:
        """The next window to fetch, or None when every block has been handed out."""
        if self._pending:
            # a remainder queued before a cap was learned may exceed it: trim it now
            window = self._pending.pop(0)
            first = window.head(self.span())
            rest = window.after(first)
            if rest is not None:
                self._pending.insert(0, rest)
            return first
        if self._next_start > self.whole.end:
            return None
        span = self.span()
        if self.probe and self._next_start == self.whole.start and not self.long:
            span = max(1, span // self._parts)
            self._reshare = True
        elif self._reshare:
            self._reshare = False
            self._share = even_span(self.whole.end - self._next_start + 1, self._parts)
            span = self.span()
        window = BlockRange(self._next_start, self.whole.end).head(span)
        self._next_start = window.end + 1
        return window

    def requeue(self, remainder: BlockRange) -> None:
        """Blocks split off a failed window: fetched before any new window."""
        self._pending.append(remainder)
        self._pending.sort(key=lambda r: r.start)
