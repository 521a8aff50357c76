"""Chain access: the JSON-RPC client(s) and the :class:`ChainReader` port the drain uses."""
