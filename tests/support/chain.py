"""The `chain` fixture's value: a running anvil with the test contracts deployed."""

from __future__ import annotations

from dataclasses import dataclass

from bot.devnet.anvil import AnvilProcess
from bot.devnet.deploy import Deployment
from bot.devnet.rpc import JsonRpcClient


@dataclass(frozen=True)
class Chain:
    """A running anvil with the test contracts deployed, and an RPC client to it."""

    anvil: AnvilProcess
    rpc: JsonRpcClient
    deployment: Deployment

    @property
    def http_url(self) -> str:
        return self.anvil.http_url

    @property
    def ws_url(self) -> str:
        return self.anvil.ws_url
