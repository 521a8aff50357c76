"""The broker a configuration asks for (SPEC §5): ``dry-run`` (default) or ``alpaca``."""

from __future__ import annotations

from bot.broker.alpaca import AlpacaBroker
from bot.broker.base import Broker
from bot.broker.dry_run import DryRunBroker
from bot.config import Settings


def build_broker(settings: Settings) -> Broker:
    """A new broker client; close it with ``aclose()``."""
    broker = settings.broker
    if broker.kind == "alpaca":
        alpaca = broker.alpaca
        return AlpacaBroker(
            base_url=alpaca.base_url,
            key_id=alpaca.api_key_id.get_secret_value(),
            secret=alpaca.api_secret.get_secret_value(),
            timeout_s=alpaca.timeout_s,
            requests_per_minute=alpaca.requests_per_minute,
        )
    return DryRunBroker()
