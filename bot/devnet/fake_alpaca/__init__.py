"""A local fake of the Alpaca Trading API v2 (the public Alpaca docs; SPEC §5), nasty parts
included, for tests and the local demo: a real aiohttp server on loopback.

Modules: ``wire`` (formats and error bodies), ``orders`` (one order's life, pure), ``params``
(request fields), ``book`` (account state and endpoint rules, pure), ``views`` (account,
position, asset, clock JSON), ``faults`` (injected faults), ``routes`` and ``server``
(:class:`FakeAlpaca`), ``__main__`` (``python -m bot.devnet.fake_alpaca --port N``).
"""

from bot.devnet.fake_alpaca.server import FakeAlpaca

__all__ = ["FakeAlpaca"]
