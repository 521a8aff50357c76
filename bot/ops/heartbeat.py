"""The heartbeat line and the backlog warning (pure; SPEC §10).

Rules:
- Every ``HEARTBEAT_INTERVAL_S`` the run loop logs one line: head, checkpoint, lag, queue pending,
  executions in flight, market open; unknown values print as ``-`` so the line's shape never changes
  (grep-able: ``heartbeat head=123 checkpoint=120 lag=3 pending=0 in_flight=1 market=open``).
- While a backfill runs, live events wait in the queue; when more than ``live.backlog_warn``
  wait, one warning is raised, and another only after the backlog fell back to the limit or the
  backfill ended.
"""

from __future__ import annotations

from dataclasses import dataclass

HEARTBEAT_INTERVAL_S = 60.0
DEFAULT_BACKLOG_WARN = 10_000


@dataclass(frozen=True)
class HeartbeatSnapshot:
    """What the run loop knows at the heartbeat; None where it does not know yet."""

    head_block: int | None
    checkpoint_block: int | None
    queue_pending: int
    executions_in_flight: int
    market_open: bool | None


def heartbeat_line(snapshot: HeartbeatSnapshot) -> str:
    """One log line, always the same fields in the same order."""
    head, checkpoint = snapshot.head_block, snapshot.checkpoint_block
    lag = max(0, head - checkpoint) if head is not None and checkpoint is not None else None
    market = {True: "open", False: "closed", None: "-"}[snapshot.market_open]
    return (
        f"heartbeat head={_or_dash(head)} checkpoint={_or_dash(checkpoint)} lag={_or_dash(lag)} "
        f"pending={snapshot.queue_pending} in_flight={snapshot.executions_in_flight} "
        f"market={market}"
    )


def _or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)


class HeartbeatTimer:
    """Says when the next heartbeat is due, from a monotonic clock the caller passes."""

    def __init__(self, interval_s: float = HEARTBEAT_INTERVAL_S) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self._interval_s = interval_s
        self._next: float | None = None

    def due(self, now: float) -> bool:
        """True on the first call and then once per interval (missed beats are not replayed)."""
        if self._next is not None and now < self._next:
            return False
        self._next = now + self._interval_s
        return True


class BacklogWarning:
    """Warn once when live events pile up behind a backfill; re-arm when the pile is back down."""

    def __init__(self, threshold: int = DEFAULT_BACKLOG_WARN) -> None:
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        self._threshold = threshold
        self._warned = False

    def check(self, pending_live_events: int, backfilling: bool) -> str | None:
        """The warning text when it should be logged now, else None."""
        if not backfilling or pending_live_events <= self._threshold:
            self._warned = False
            return None
        if self._warned:
            return None
        self._warned = True
        return (
            f"{pending_live_events} live events are waiting in the queue behind the backfill "
            f"(live.backlog_warn = {self._threshold}); they are processed once it catches up"
        )
