"""Pure core: no asyncio, network or database imports anywhere below this package."""
