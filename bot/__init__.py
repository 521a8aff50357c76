"""bot: hedges Raindex OrderBook fills of tokenized equities at a stock broker."""

__version__ = "0.1.0"
