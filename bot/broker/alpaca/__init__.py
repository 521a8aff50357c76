"""The Alpaca Trading API v2 broker: :class:`AlpacaBroker` (wire parsing in ``_wire``)."""

from bot.broker.alpaca.client import AlpacaBroker

__all__ = ["AlpacaBroker"]
