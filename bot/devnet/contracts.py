"""The committed test-contract artifacts as web3.py contract objects, and a transaction sender.

Dev tooling only: deployment, simulated fills and balance checks go through web3.py (its ABI
encoding, its receipts); the bot's own hot path keeps the lean client of ``bot.chain`` (NOTES.md:
web3's log decoding is several times slower). ``JsonRpcClient`` stays for raw node control calls
(``evm_mine``, ``anvil_reorg``...), and any function here taking a ``Node`` also accepts one: it
then opens a web3 connection to the same URL for the duration of the call.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import requests
from eth_typing import ChecksumAddress
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3 import HTTPProvider, Web3
from web3.contract import Contract
from web3.contract.contract import ContractConstructor, ContractFunction
from web3.exceptions import TimeExhausted, Web3RPCError
from web3.types import TxParams, TxReceipt

from bot.devnet.rpc import JsonRpcClient
from bot.errors import DevnetError, DevnetRpcError, TransactionFailedError

ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"
RECEIPT_TIMEOUT_S = 30.0
RECEIPT_POLL_S = 0.002
"""web3 polls every 0.1 s by default; anvil mines at once, so that would be the whole cost."""
MAX_UNCONFIRMED_SENDS = 50
"""Wait for receipts at least this often: a piled-up pool made anvil stall (NOTES.md)."""
Node = Web3 | JsonRpcClient


def canonical_type(param: dict[str, Any]) -> str:
    """The canonical ABI type of one ABI parameter (tuples expanded, array suffixes kept)."""
    kind = str(param["type"])
    if kind.startswith("tuple"):
        inner = ",".join(canonical_type(c) for c in param["components"])
        return f"({inner}){kind[len('tuple') :]}"
    return kind


def signature(entry: dict[str, Any]) -> str:
    """``name(type,...)`` of an ABI function or event entry."""
    return f"{entry['name']}({','.join(canonical_type(p) for p in entry['inputs'])})"


def checksum(address: str) -> ChecksumAddress:
    """web3 accepts only checksummed addresses, and anvil answers lowercase ones."""
    return Web3.to_checksum_address(address)


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: bytes

    def _entry(self, kind: str, name: str) -> dict[str, Any]:
        matches = [e for e in self.abi if e.get("type") == kind and e.get("name") == name]
        if len(matches) != 1:
            raise KeyError(f"{self.name}: {len(matches)} ABI {kind}s named {name!r}")
        return matches[0]

    def event_signature(self, event: str) -> str:
        return signature(self._entry("event", event))

    def event_topic(self, event: str) -> str:
        return "0x" + bytes(keccak(text=self.event_signature(event))).hex()

    def at(self, w3: Web3, address: str) -> Contract:
        """A web3 contract object of this artifact deployed at ``address``."""
        return w3.eth.contract(address=checksum(address), abi=self.abi)

    def constructor(self, w3: Web3, *args: object) -> ContractConstructor:
        """The deployment call (bytecode + constructor arguments), to send with ``TxSender``."""
        return w3.eth.contract(abi=self.abi, bytecode=self.bytecode).constructor(*args)


@cache
def load_artifact(name: str) -> Artifact:
    """Load ``bot/devnet/artifacts/<name>.json`` (rebuilt by ``npm run build-contracts``)."""
    raw = json.loads((ARTIFACTS_DIR / f"{name}.json").read_text())
    code = str(raw["bytecode"])
    return Artifact(
        name=name, abi=list(raw["abi"]), bytecode=bytes.fromhex(code.removeprefix("0x"))
    )


def token_artifact() -> Artifact:
    return load_artifact("TestToken")


def orderbook_artifact() -> Artifact:
    return load_artifact("TestOrderBook")


@contextmanager
def connect(url: str, timeout_s: float = 30.0) -> Iterator[Web3]:
    """A synchronous ``Web3(HTTPProvider(url))`` whose HTTP session is closed on exit.

    No retries: an unreachable node fails at once (``DevnetError`` "... unreachable").
    The fee and chain-id middlewares are dropped: anvil fills both for its unlocked accounts,
    and they cost two more RPCs (chain id, latest block) per transaction sent.
    """
    session = requests.Session()
    # No proxy or netrc from the environment: an HTTP(S)_PROXY must not capture a loopback
    # devnet, and requests would otherwise look them up again for every call.
    session.trust_env = False
    provider = HTTPProvider(
        url,
        request_kwargs={"timeout": timeout_s},
        session=session,
        exception_retry_configuration=None,
    )
    w3 = Web3(provider)
    w3.middleware_onion.remove("gas_price_strategy")
    w3.middleware_onion.remove("validation")
    try:
        with translated_errors(url):
            yield w3
    finally:
        session.close()


@contextmanager
def web3_for(node: Node) -> Iterator[Web3]:
    """``node`` itself if it is a ``Web3``, else a connection to the client's URL (closed after)."""
    if isinstance(node, Web3):
        with translated_errors(str(getattr(node.provider, "endpoint_uri", "node"))):
            yield node
        return
    with connect(node.url) as w3:
        yield w3


@contextmanager
def translated_errors(url: str) -> Iterator[None]:
    """web3's and requests' exceptions as the project's ``DevnetError`` tree."""
    try:
        yield
    except requests.ConnectionError as exc:
        raise DevnetError(f"JSON-RPC endpoint {url} unreachable: {exc}") from exc
    except requests.RequestException as exc:
        raise DevnetError(f"JSON-RPC endpoint {url}: {exc}") from exc
    except Web3RPCError as exc:
        error = (exc.rpc_response or {}).get("error")
        if isinstance(error, Mapping):
            code, message = int(error.get("code", 0)), str(error.get("message"))
            raise DevnetRpcError(url, code, message, error.get("data")) from exc
        raise DevnetRpcError(url, 0, exc.message) from exc


def wire_form(value: Any) -> Any:
    """A web3-formatted value back in JSON-RPC form: ints as hex quantities, bytes as ``0x``
    hex, addresses lowercase, as the node sent them (and as ``bot.chain`` sees them). One
    difference: anvil 1.7.1 sends a receipt's top-level ``blockTimestamp`` as a plain number."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, bytes):
        return HexBytes(value).to_0x_hex()
    if isinstance(value, str):
        return value.lower()
    if isinstance(value, Mapping):
        return {str(k): wire_form(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [wire_form(v) for v in value]
    raise TypeError(f"no JSON-RPC form for {type(value).__name__}")


class TxSender:
    """Sends contract calls from anvil's unlocked accounts; never lets unconfirmed sends pile up.

    Every ``max_unconfirmed`` sends it waits for all pending receipts (``flush``), and raises
    ``TransactionFailedError`` on the first reverted one. Given a ``JsonRpcClient`` it opens its
    own web3 connection on the first send and closes it whenever nothing is pending.
    """

    def __init__(
        self,
        node: Node,
        max_unconfirmed: int = MAX_UNCONFIRMED_SENDS,
        *,
        keep_receipts: bool = False,
    ) -> None:
        self.node = node
        self.max_unconfirmed = max_unconfirmed
        self.keep_receipts = keep_receipts
        """Keep every receipt in ``receipts`` (auto-flushed ones too); off for endless runs."""
        self.receipts: list[TxReceipt] = []
        self._pending: list[HexBytes] = []
        self._w3: Web3 | None = node if isinstance(node, Web3) else None
        self._connection = ExitStack()
        self._contracts: dict[tuple[str, str], Contract] = {}

    @property
    def w3(self) -> Web3:
        if self._w3 is None:
            assert isinstance(self.node, JsonRpcClient)
            self._w3 = self._connection.enter_context(connect(self.node.url))
        return self._w3

    def contract(self, artifact: Artifact, address: str) -> Contract:
        """A cached contract object on this sender's connection (building one parses the ABI)."""
        key = (artifact.name, address)
        found = self._contracts.get(key)
        if found is None:
            found = self._contracts[key] = artifact.at(self.w3, address)
        return found

    def send(self, call: ContractFunction | ContractConstructor, sender: str, gas: int) -> HexBytes:
        """Send one call from ``sender`` with a fixed gas limit (no estimate: one RPC per send)."""
        params: TxParams = {"from": checksum(sender), "gas": gas}
        with translated_errors(self._url()):
            tx_hash = call.transact(params)
        self._pending.append(tx_hash)
        if len(self._pending) >= self.max_unconfirmed:
            self.flush()
        return tx_hash

    def flush(self) -> list[TxReceipt]:
        """Wait for every pending receipt (web3's form); raise on the first reverted one."""
        pending, self._pending = self._pending, []
        receipts: list[TxReceipt] = []
        try:
            with translated_errors(self._url()):
                for tx_hash in pending:
                    receipt = self._receipt(tx_hash)
                    if receipt["status"] != 1:
                        raise TransactionFailedError(tx_hash.to_0x_hex(), dict(receipt))
                    receipts.append(receipt)
        finally:
            if self.keep_receipts:
                self.receipts.extend(receipts)
            self.close()
        return receipts

    def send_and_wait(
        self, call: ContractFunction | ContractConstructor, sender: str, gas: int
    ) -> TxReceipt:
        self.send(call, sender, gas)
        return self.flush()[-1]

    def _receipt(self, tx_hash: HexBytes) -> TxReceipt:
        try:
            return self.w3.eth.wait_for_transaction_receipt(
                tx_hash, timeout=RECEIPT_TIMEOUT_S, poll_latency=RECEIPT_POLL_S
            )
        except TimeExhausted as exc:
            raise DevnetError(
                f"no receipt for {tx_hash.to_0x_hex()} after {RECEIPT_TIMEOUT_S} s"
            ) from exc

    def _url(self) -> str:
        if isinstance(self.node, JsonRpcClient):
            return self.node.url
        return str(getattr(self.node.provider, "endpoint_uri", "node"))

    def close(self) -> None:
        """Close a connection this sender opened itself (only when nothing is pending)."""
        if isinstance(self.node, JsonRpcClient) and self._w3 is not None and not self._pending:
            self._w3 = None
            self._contracts.clear()
            self._connection.close()
