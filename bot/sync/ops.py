"""What `run` tells its operator (SPEC §10): alerts, the heartbeat and the backlog warning.

Builds the :mod:`bot.ops` snapshots from the engine, the broker watch and the session's own
state; the monitor decides what is news. Nothing here waits for the network: alerts go to the
sink's queue and are posted in the background.
"""

from __future__ import annotations

import time
from datetime import datetime
from decimal import Decimal

from bot.core.blocking import Reason
from bot.engine.broker_watch import BrokerWatch
from bot.engine.desk import utc_now
from bot.engine.drain import Engine
from bot.ops.conditions import InFlightExecution, TickerExposure
from bot.ops.heartbeat import HeartbeatSnapshot
from bot.ops.monitor import OpsMonitor, OpsSnapshot

_UNREACHABLE = (Reason.BROKER_UNREACHABLE, Reason.BROKER_UNVERIFIED)
_BLOCKED = (Reason.ACCOUNT_BLOCKED, Reason.KEYS_REFUSED, Reason.ACCOUNT_REFUSED)


def ops_snapshot(
    engine: Engine, watch: BrokerWatch | None, *, stream_trouble: str | None, now: datetime
) -> OpsSnapshot:
    blocks = engine.blocking_reasons(now)

    def first(reasons: tuple[Reason, ...]) -> str | None:
        found = [f"{b.reason}: {b.detail}" for b in blocks if b.reason in reasons]
        return "; ".join(found) or None

    acc = engine.accumulator
    market_open = True if watch is None or watch.market_open is None else watch.market_open
    drift: dict[str, Decimal] = {}
    if watch is not None:
        for ticker, state in watch.tickers.items():
            if state.drift_checks >= 2 and state.drift_shares:
                drift[ticker] = state.drift_shares
    return OpsSnapshot(
        now=now,
        paused_reason="an event of ours failed: see `bot status`" if engine.paused else None,
        parked={p.ticker: "rejected too often" for p in acc.positions() if p.parked},
        stream_stale=stream_trouble,
        broker_unreachable=first(_UNREACHABLE),
        broker_blocked=first(_BLOCKED),
        drift=drift,
        in_flight=[
            InFlightExecution(e.id, e.ticker, e.created_at or now, e.shares)
            for e in acc.in_flight_executions()
        ],
        exposures=[
            TickerExposure(
                p.ticker,
                p.unhedged,
                max(acc.threshold, Decimal(1)),
                market_open and engine.blocking(p.ticker, now) is None,
            )
            for p in acc.positions()
        ],
    )


def report(
    monitor: OpsMonitor,
    engine: Engine,
    watch: BrokerWatch | None,
    *,
    stream_trouble: str | None,
    head_block: int | None,
    checkpoint_block: int | None,
    pending: int,
) -> None:
    """One tick of the operator's view: alerts and, once a minute, the heartbeat line."""
    now = utc_now()
    monitor.tick(ops_snapshot(engine, watch, stream_trouble=stream_trouble, now=now))
    monitor.beat(
        HeartbeatSnapshot(
            head_block=head_block,
            checkpoint_block=checkpoint_block,
            queue_pending=pending,
            executions_in_flight=len(engine.accumulator.in_flight_executions()),
            market_open=None if watch is None else watch.market_open,
        ),
        time.monotonic(),
    )
