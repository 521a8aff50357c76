"""Brokers: the :class:`Broker` seam and its implementations (dry-run, alpaca)."""

from bot.broker.base import (
    AccountState,
    AssetInfo,
    Broker,
    BrokerPosition,
    MarketClock,
    OrderRequest,
    OrderState,
    OrderStatus,
)
from bot.broker.dry_run import DryRunBroker

__all__ = [
    "AccountState",
    "AssetInfo",
    "Broker",
    "BrokerPosition",
    "DryRunBroker",
    "MarketClock",
    "OrderRequest",
    "OrderState",
    "OrderStatus",
]
