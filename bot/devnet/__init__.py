"""Local devnet tooling: anvil process, test contracts, deployment and fill simulation.

Dev tooling, not core: synchronous, plain JSON-RPC over HTTP. Submodules are imported
explicitly (``bot.devnet.anvil``, ``bot.devnet.deploy``, ``bot.devnet.plan``, ...) so that
importing this package stays cheap.
"""
