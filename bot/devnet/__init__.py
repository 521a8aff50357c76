"""Local devnet tooling: anvil process, test contracts, deployment and fill simulation.

Dev tooling, not core: synchronous web3.py contract objects over HTTP for deployment, fills and
balances (``bot.devnet.contracts``), a plain JSON-RPC client for raw node control. Submodules
are imported explicitly (``bot.devnet.anvil``, ``bot.devnet.deploy``, ``bot.devnet.plan``, ...)
so that importing this package stays cheap (web3 alone takes ~0.7 s to import).
"""
