"""Deploy the test tokens and orderbook on a devnet (web3.py contract objects) and fund and
approve every participant; ``Deployment`` is what a simulator or a bot config needs of it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from web3 import Web3
from web3.types import BlockIdentifier

from bot.devnet.contracts import (
    Node,
    TxSender,
    checksum,
    orderbook_artifact,
    token_artifact,
    web3_for,
)
from bot.devnet.plan import OTHER_OWNERS, TOKENS, US
from bot.devnet.rpc import DevnetError

DEPLOY_GAS = 5_000_000
CALL_GAS = 200_000
MAX_UINT256 = 2**256 - 1
MINT_TOKENS = 10**12
"""Whole tokens minted to each participant: enough for years of simulation at any rate."""
_TOKEN_NAMES = {
    "USDC": "USD Coin (devnet)",
    "AAPLs1": "Apple tokenized (devnet)",
    "TSLAs1": "Tesla tokenized (devnet)",
    "NVDA0x": "NVIDIA tokenized (devnet)",
    "wtMSFT": "Microsoft wrapped tokenized (devnet)",
    "WETH": "Wrapped Ether (devnet)",
}


@dataclass(frozen=True)
class DeployedToken:
    symbol: str
    address: str
    decimals: int


@dataclass(frozen=True)
class Deployment:
    """Everything a simulator or a bot config needs to know about one devnet deployment."""

    chain_id: int
    orderbook: str
    deployment_block: int
    deployer: str
    order_owner: str
    other_owners: tuple[str, ...]
    taker: str
    clearer: str
    tokens: dict[str, DeployedToken]

    def owner_address(self, role: str) -> str:
        """The account of a plan role (``"us"``, ``"other1"``...)."""
        if role == US:
            return self.order_owner
        return self.other_owners[OTHER_OWNERS.index(role)]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["other_owners"] = list(self.other_owners)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Deployment:
        return cls(
            chain_id=int(data["chain_id"]),
            orderbook=checksum(data["orderbook"]),
            deployment_block=int(data["deployment_block"]),
            deployer=checksum(data["deployer"]),
            order_owner=checksum(data["order_owner"]),
            other_owners=tuple(checksum(a) for a in data["other_owners"]),
            taker=checksum(data["taker"]),
            clearer=checksum(data["clearer"]),
            tokens={
                symbol: DeployedToken(symbol, checksum(t["address"]), int(t["decimals"]))
                for symbol, t in data["tokens"].items()
            },
        )

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> Deployment:
        return cls.from_json(json.loads(path.read_text()))


def deploy(node: Node) -> Deployment:
    """Deploy tokens and orderbook with anvil's unlocked accounts, mint to and approve for all.

    Accounts (``eth_accounts``): 0 deployer, 1 our order owner, 2-4 other owners, 5 taker,
    6 clearer. ``node`` is a ``Web3`` or a ``JsonRpcClient`` (then a connection to its URL).
    """
    with web3_for(node) as w3:
        return _deploy(w3)


def _deploy(w3: Web3) -> Deployment:
    accounts = [checksum(a) for a in w3.eth.accounts]
    needed = 3 + len(OTHER_OWNERS) + 1
    if len(accounts) < needed:
        raise DevnetError(f"the node has {len(accounts)} unlocked accounts, {needed} needed")
    deployer, us = accounts[0], accounts[1]
    others = tuple(accounts[2 : 2 + len(OTHER_OWNERS)])
    taker, clearer = accounts[2 + len(OTHER_OWNERS)], accounts[3 + len(OTHER_OWNERS)]
    participants = (us, *others, taker, clearer)
    sender = TxSender(w3)
    token_art, book_art = token_artifact(), orderbook_artifact()

    for symbol, decimals in TOKENS.items():
        constructor = token_art.constructor(w3, _TOKEN_NAMES[symbol], symbol, decimals)
        sender.send(constructor, deployer, DEPLOY_GAS)
    sender.send(book_art.constructor(w3), deployer, DEPLOY_GAS)
    receipts = sender.flush()
    addresses = [checksum(str(r["contractAddress"])) for r in receipts]
    tokens = {
        symbol: DeployedToken(symbol, address, decimals)
        for (symbol, decimals), address in zip(TOKENS.items(), addresses, strict=False)
    }
    orderbook = addresses[-1]
    deployment_block = int(receipts[-1]["blockNumber"])

    for token in tokens.values():
        contract = sender.contract(token_art, token.address)
        amount = MINT_TOKENS * 10**token.decimals
        for account in participants:
            sender.send(contract.functions.mint(account, amount), deployer, CALL_GAS)
            sender.send(contract.functions.approve(orderbook, MAX_UINT256), account, CALL_GAS)
    sender.flush()
    return Deployment(
        chain_id=int(w3.eth.chain_id),
        orderbook=orderbook,
        deployment_block=deployment_block,
        deployer=deployer,
        order_owner=us,
        other_owners=others,
        taker=taker,
        clearer=clearer,
        tokens=tokens,
    )


def balance_of(node: Node, token: str, account: str, block: BlockIdentifier = "latest") -> int:
    """ERC-20 ``balanceOf`` through a web3 contract call (an oracle independent of any event
    decoding); ``node`` is a ``Web3`` or a ``JsonRpcClient``."""
    with web3_for(node) as w3:
        contract = token_artifact().at(w3, token)
        return int(contract.functions.balanceOf(checksum(account)).call(block_identifier=block))
