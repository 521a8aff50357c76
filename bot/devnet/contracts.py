"""The committed test-contract artifacts and ABI encoding of their calls (eth_abi, no web3)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"


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


def keccak_hex(text: str) -> str:
    return "0x" + bytes(keccak(text=text)).hex()


def checksum(address: str) -> str:
    return str(to_checksum_address(address))


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

    def input_types(self, function: str) -> list[str]:
        return [canonical_type(p) for p in self._entry("function", function)["inputs"]]

    def encode_call(self, function: str, *args: object) -> bytes:
        """Calldata: the 4-byte selector then the ABI-encoded arguments."""
        entry = self._entry("function", function)
        selector = bytes(keccak(text=signature(entry)))[:4]
        return selector + bytes(abi_encode(self.input_types(function), list(args)))

    def decode_result(self, function: str, data: bytes) -> tuple[Any, ...]:
        outputs = [canonical_type(p) for p in self._entry("function", function)["outputs"]]
        return tuple(abi_decode(outputs, data))

    def deploy_data(self, *constructor_args: object) -> bytes:
        ctor = [e for e in self.abi if e.get("type") == "constructor"]
        types = [canonical_type(p) for p in ctor[0]["inputs"]] if ctor else []
        return self.bytecode + bytes(abi_encode(types, list(constructor_args)))

    def event_signature(self, event: str) -> str:
        return signature(self._entry("event", event))

    def event_topic(self, event: str) -> str:
        return keccak_hex(self.event_signature(event))


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
