"""A loopback HTTP JSON-RPC proxy that reorganises the chain behind it at a chosen request, and
can play a provider that lags or answers badly.

- ``hooks``: each runs once, before forwarding (``before=True``) or after the upstream answered
  but before that answer is returned, on the first request its ``when`` accepts. A hook is
  usually :meth:`ReorgProxy.reorg` (``anvil_reorg`` on the upstream), so the reorg lands exactly
  between two reads of the bot.
- ``lag_above``: the proxy plays a provider that has not seen the blocks above this height:
  ``eth_blockNumber`` answers it, their headers are ``null``, their logs are left out of ranged
  answers and their by-hash answers are ``[]``. ``logs_lag_above`` does the last two only (a
  provider whose log index lags its headers).
- ``answers``: canned answers for requests ``when`` accepts (``result`` or ``error``), used once
  each, in order.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from web3 import Web3

from bot.devnet.contracts import orderbook_artifact
from bot.devnet.deploy import Deployment
from bot.devnet.plan import make_plan, our_share_deltas
from bot.devnet.simulate import gas_limit, planned_call
from tests.support.proxies import RecordedCall, RpcProxy

Predicate = Callable[[RecordedCall], bool]


@dataclass
class Hook:
    when: Predicate
    action: Callable[[RecordedCall], Awaitable[None]]
    before: bool = False
    done: bool = False


@dataclass
class Canned:
    when: Predicate
    result: Any = None
    error: dict[str, Any] | None = None
    used: bool = False


def by_hash(block_hash: str) -> Predicate:
    """``eth_getLogs{blockHash}`` of one block."""
    return lambda call: (
        call.method == "eth_getLogs"
        and bool(call.params)
        and str(call.params[0].get("blockHash", "")).lower() == block_hash.lower()
    )


def ranged_reaching(block: int) -> Predicate:
    """A ranged ``eth_getLogs`` whose range contains ``block``."""
    return lambda call: (
        call.block_range is not None and (call.block_range[0] <= block <= call.block_range[1])
    )


@dataclass
class Reorg:
    """What :meth:`ReorgProxy.reorg` did (the test asserts on it)."""

    depth: int
    at: float = 0.0
    head_before: int = -1


class ReorgProxy(RpcProxy):
    def __init__(self, upstream_url: str) -> None:
        super().__init__(upstream_url)
        self.hooks: list[Hook] = []
        self.answers: list[Canned] = []
        self.lag_above: int | None = None
        self.logs_lag_above: int | None = None
        self.reorgs: list[Reorg] = []

    async def upstream(self, method: str, params: list[Any]) -> Any:
        assert self._session is not None
        payload = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        async with self._session.post(self._upstream, json=payload) as response:
            answer = await response.json()
        if "error" in answer:
            raise AssertionError(f"{method} failed upstream: {answer['error']}")
        return answer["result"]

    def reorg(
        self, depth: int, txs: list[Any] | None = None
    ) -> Callable[[RecordedCall], Awaitable[None]]:
        """A hook action: ``anvil_reorg(depth, txs)`` on the upstream, recorded."""

        async def action(_call: RecordedCall) -> None:
            head = int(await self.upstream("eth_blockNumber", []), 16)
            await self.upstream("anvil_reorg", [depth, txs or []])
            self.reorgs.append(Reorg(depth, time.monotonic(), head))

        return action

    def calls_matching(self, when: Predicate) -> list[RecordedCall]:
        return [call for call in self.calls if when(call)]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        payload = json.loads(body)
        if isinstance(payload, list):
            return await super()._handle(request)
        call = RecordedCall(time.monotonic(), payload.get("method", ""), payload.get("params", []))
        self.calls.append(call)
        request_id = payload.get("id")
        for hook in self.hooks:
            if hook.before and not hook.done and hook.when(call):
                hook.done = True
                await hook.action(call)
        for canned in self.answers:
            if not canned.used and canned.when(call):
                canned.used = True
                call.injected = json.dumps(canned.error or canned.result)
                reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id}
                reply.update({"error": canned.error} if canned.error else {"result": canned.result})
                return web.json_response(reply)
        lagged = self._lagging(call)
        if lagged is not None:
            call.injected = "lagging"
            return web.json_response({"jsonrpc": "2.0", "id": request_id, "result": lagged[0]})
        assert self._session is not None
        async with self._session.post(
            self._upstream, data=body, headers={"Content-Type": "application/json"}
        ) as upstream:
            answer = await upstream.read()
            status = upstream.status
        for hook in self.hooks:
            if not hook.before and not hook.done and hook.when(call):
                hook.done = True
                await hook.action(call)
        answer = self._trim(call, answer)
        return web.Response(body=answer, status=status, content_type="application/json")

    def _lagging(self, call: RecordedCall) -> tuple[Any] | None:
        """The answer of a provider that has not seen blocks above ``lag_above`` (a 1-tuple),
        or None to forward the call."""
        lag = self.lag_above
        if lag is not None and call.method == "eth_blockNumber":
            return (hex(lag),)
        if lag is not None and call.method == "eth_getBlockByNumber":
            number = call.params[0]
            if isinstance(number, str) and number.startswith("0x") and int(number, 16) > lag:
                return (None,)
        return None

    def _trim(self, call: RecordedCall, answer: bytes) -> bytes:
        """Leave out of a logs answer the logs of blocks the lagging provider has not seen."""
        lags = [x for x in (self.lag_above, self.logs_lag_above) if x is not None]
        if call.method != "eth_getLogs" or not lags:
            return answer
        decoded = json.loads(answer)
        if not isinstance(decoded.get("result"), list):
            return answer
        kept = [log for log in decoded["result"] if int(log["blockNumber"], 16) <= min(lags)]
        if len(kept) != len(decoded["result"]):
            call.injected = "lagging"
        decoded["result"] = kept
        return json.dumps(decoded).encode()


def replay_request(transaction: dict[str, Any]) -> dict[str, Any]:
    """An ``anvil_reorg`` transaction request that sends ``transaction`` (an
    ``eth_getTransactionByHash`` answer) again, in another block of the new branch."""
    keys = ("from", "to", "input", "gas", "nonce", "value", "maxFeePerGas", "maxPriorityFeePerGas")
    request = {key: transaction[key] for key in keys if key in transaction}
    request["data"] = request.pop("input")
    return request


def fresh_fill(deployment: Deployment, seed: int) -> dict[str, Any]:
    """A transaction request for a fill of ours the chain has not seen (the first one of plan
    ``seed``): for ``anvil_reorg``'s new branch, or to send."""
    for tx in make_plan(seed=seed, fills=12):
        if our_share_deltas(tx):
            book = orderbook_artifact().at(Web3(), deployment.orderbook)  # offline encoding
            planned = planned_call(book, tx, deployment)
            return {
                "from": planned.sender,
                "to": deployment.orderbook,
                "data": planned.call._encode_transaction_data(),
                "gas": hex(gas_limit(tx)),
            }
    raise AssertionError(f"plan {seed} has no fill of ours")
