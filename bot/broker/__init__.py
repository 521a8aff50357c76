"""Brokers: the :class:`Broker` port and its implementations (dry-run now, alpaca later)."""

from bot.broker.base import Broker, OrderRequest, OrderState
from bot.broker.dry_run import DryRunBroker

__all__ = ["Broker", "DryRunBroker", "OrderRequest", "OrderState"]
