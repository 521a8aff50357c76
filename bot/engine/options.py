"""Engine, desk and broker-watch options from the configuration."""

from __future__ import annotations

from bot.config import Settings
from bot.engine.broker_watch import WatchOptions
from bot.engine.desk import DeskOptions
from bot.engine.drain import EngineOptions


def engine_options(settings: Settings) -> EngineOptions:
    broker = settings.broker
    return EngineOptions(
        threshold_shares=settings.accumulator.threshold_shares,
        max_rejections=broker.max_rejections,
        batch_size=settings.accumulator.batch_events,
        desk=DeskOptions(
            rejection_backoff_s=broker.rejection_backoff_s,
            poll_interval_s=broker.alpaca.poll_interval_s,
            fractional=broker.fractional,
        ),
    )


def watch_options(settings: Settings) -> WatchOptions:
    return WatchOptions(
        market_hours=settings.broker.market_hours,
        reconcile_every_s=settings.broker.reconcile_every_s,
    )
