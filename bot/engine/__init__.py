"""The ordered drain tying the store, the pure core and the broker together."""

from bot.engine.drain import DrainStats, Engine, EngineOptions
from bot.engine.prepare import RetryPolicy

__all__ = ["DrainStats", "Engine", "EngineOptions", "RetryPolicy"]
