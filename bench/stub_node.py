"""A stub JSON-RPC node over :mod:`bot.devnet.synthetic`'s events, for histories anvil cannot
build in reasonable time (a million events, a million empty blocks).

    .venv/bin/python -m bench.stub_node --events 1000000 [--logs-per-block 20] [--blocks N]

Serves HTTP (POST /) and WebSocket (GET /) JSON-RPC on 127.0.0.1 (port 0 by default; the first
stdout line is ``listening on http://127.0.0.1:PORT``): ``eth_chainId`` (31337),
``eth_blockNumber``, ``eth_getBlockByNumber``, ``eth_getLogs`` (by range or ``blockHash``),
``eth_call`` (``symbol()``/``decimals()`` of the synthetic tokens), ``eth_getTransactionReceipt``
and ``eth_subscribe`` (accepted, never notifies: the history is fixed).

Memory of the stub is flat in the history: a pool of distinct, ABI-exact synthetic transactions
(~10 % ours, takes and clears) is encoded once, and the history repeats it ``copies`` times with
block numbers shifted and transaction hashes made unique per copy, so every log is a distinct
``(tx_hash, log_index)``. Answers are rendered from per-log JSON templates.
Block ``n`` has hash ``0x`` + ``n`` in 64 hex digits, so a hash maps back to its number.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web
from eth_abi.abi import encode

from bot.devnet.synthetic import ORDERBOOK, SYNTHETIC_TOKENS, synthetic_transactions

CHAIN_ID = 31337
POOL_LOGS = 4000
_BLOOM = "0x" + "00" * 256


def block_hash(number: int) -> str:
    return f"0x{number:064x}"


@dataclass(frozen=True, slots=True)
class _PoolLog:
    block: int  # block within the pool, from 0
    tx: int  # transaction number within the pool
    template: str  # JSON with %(n)s (block number hex), %(h)s (block hash), %(t)s (tx hash)


class History:
    """``events`` logs (a whole number of pool copies, at least ``events``) over blocks
    ``first_block..head``; ``head`` defaults to the last block holding a log."""

    def __init__(
        self,
        events: int,
        *,
        logs_per_block: int = 20,
        first_block: int = 1,
        head: int | None = None,
        seed: int = 1,
    ) -> None:
        self.first_block = first_block
        pool: list[_PoolLog] = []
        pool_blocks = 0
        if events > 0:
            size = min(events, POOL_LOGS)
            txs = list(
                synthetic_transactions(
                    size, seed=seed, logs_per_block=logs_per_block, first_block=0
                )
            )
            for number, tx in enumerate(txs):
                for log in tx.logs:
                    pool.append(_PoolLog(log.block_number, number, _template(log)))
            pool_blocks = pool[-1].block + 1
        self.pool = pool
        self.pool_blocks = pool_blocks
        self.pool_tx_count = pool[-1].tx + 1 if pool else 0
        self.copies = -(-events // len(pool)) if pool else 0
        self.events = self.copies * len(pool)
        self._pool_block_of = [p.block for p in pool]
        last_with_logs = first_block + self.copies * pool_blocks - 1
        self.head = head if head is not None else max(first_block, last_with_logs)

    def tx_hash(self, copy: int, tx: int) -> str:
        return f"0x{copy + 1:032x}{tx:032x}"

    def logs(self, first: int, last: int) -> list[str]:
        """JSON texts of the logs of blocks ``first..last`` (inclusive), in chain order."""
        out: list[str] = []
        if not self.pool:
            return out
        first = max(first, self.first_block)
        last = min(last, self.first_block + self.copies * self.pool_blocks - 1)
        if last < first:
            return out
        span = self.pool_blocks
        for copy in range(
            (first - self.first_block) // span, (last - self.first_block) // span + 1
        ):
            base = self.first_block + copy * span
            lo = bisect.bisect_left(self._pool_block_of, first - base)
            hi = bisect.bisect_right(self._pool_block_of, last - base)
            for entry in self.pool[lo:hi]:
                number = base + entry.block
                out.append(
                    entry.template
                    % {"n": hex(number), "h": block_hash(number), "t": self.tx_hash(copy, entry.tx)}
                )
        return out

    def receipt_logs(self, tx_hash: str) -> list[str] | None:
        value = int(tx_hash, 16)
        copy, tx = (value >> 128) - 1, value & ((1 << 128) - 1)
        if not 0 <= copy < self.copies:
            return None
        base = self.first_block + copy * self.pool_blocks
        return [
            e.template % {"n": hex(base + e.block), "h": block_hash(base + e.block), "t": tx_hash}
            for e in self.pool
            if e.tx == tx
        ]


def _template(log: Any) -> str:
    body = {
        "address": ORDERBOOK.lower(),
        "topics": [log.topic0],
        "data": "0x" + log.data.hex(),
        "blockNumber": "@n",
        "blockHash": "@h",
        "transactionHash": "@t",
        "transactionIndex": hex(log.tx_index),
        "logIndex": hex(log.log_index),
        "removed": False,
    }
    text = json.dumps(body, separators=(",", ":")).replace("%", "%%")
    return text.replace('"@n"', '"%(n)s"').replace('"@h"', '"%(h)s"').replace('"@t"', '"%(t)s"')


class StubNode:
    def __init__(self, history: History) -> None:
        self.history = history
        self.calls: dict[str, int] = {}
        tokens = {a.lower(): t for a, t in SYNTHETIC_TOKENS.items()}
        self._token_answers: dict[tuple[str, str], str] = {}
        for address, token in tokens.items():
            self._token_answers[(address, "0x95d89b41")] = (
                "0x" + encode(["string"], [token.symbol]).hex()
            )
            self._token_answers[(address, "0x313ce567")] = (
                "0x" + encode(["uint8"], [token.decimals]).hex()
            )

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024**2)
        app.router.add_post("/", self._http)
        app.router.add_get("/", self._ws)
        return app

    # each handler returns the JSON text of the ``result`` (logs are pre-rendered JSON)
    def answer(self, method: str, params: list[Any]) -> str:
        self.calls[method] = self.calls.get(method, 0) + 1
        history = self.history
        if method == "eth_chainId":
            return json.dumps(hex(CHAIN_ID))
        if method == "eth_blockNumber":
            return json.dumps(hex(history.head))
        if method == "eth_getBlockByNumber":
            tag = params[0]
            number = history.head if tag in ("latest", "safe", "finalized") else int(tag, 16)
            if number > history.head:
                return "null"
            header = {
                "number": hex(number),
                "hash": block_hash(number),
                "parentHash": block_hash(max(0, number - 1)),
                "logsBloom": _BLOOM,
                "timestamp": hex(1_700_000_000 + number),
            }
            return json.dumps(header)
        if method == "eth_getLogs":
            spec = params[0]
            if "blockHash" in spec:
                number = int(spec["blockHash"], 16)
                if number > history.head:
                    raise _RpcFault(-32000, "unknown block")
                first = last = number
            else:
                first = _block(spec.get("fromBlock", "latest"), history.head)
                last = _block(spec.get("toBlock", "latest"), history.head)
                if first > history.head:
                    raise _RpcFault(-32602, "fromBlock is past the head")
            return "[" + ",".join(history.logs(first, last)) + "]"
        if method == "eth_call":
            call = params[0]
            key = (str(call.get("to", "")).lower(), str(call.get("data", ""))[:10])
            if key not in self._token_answers:
                raise _RpcFault(3, "execution reverted")
            return json.dumps(self._token_answers[key])
        if method == "eth_getTransactionReceipt":
            logs = history.receipt_logs(params[0])
            if logs is None:
                return "null"
            joined = ",".join(logs)
            return f'{{"status":"0x1","transactionHash":"{params[0]}","logs":[{joined}]}}'
        if method == "eth_subscribe":
            return json.dumps("0x1")
        if method == "eth_unsubscribe":
            return "true"
        raise _RpcFault(-32601, f"method {method} not served by the stub")

    def _one(self, request: dict[str, Any]) -> str:
        rid = json.dumps(request.get("id"))
        try:
            result = self.answer(str(request.get("method")), list(request.get("params") or []))
        except _RpcFault as fault:
            error = json.dumps({"code": fault.code, "message": fault.message})
            return f'{{"jsonrpc":"2.0","id":{rid},"error":{error}}}'
        return f'{{"jsonrpc":"2.0","id":{rid},"result":{result}}}'

    def _body(self, text: str | bytes) -> str:
        request = json.loads(text)
        if isinstance(request, list):
            return "[" + ",".join(self._one(r) for r in request) + "]"
        return self._one(request)

    async def _http(self, request: web.Request) -> web.Response:
        return web.Response(text=self._body(await request.read()), content_type="application/json")

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(max_msg_size=0)
        await socket.prepare(request)
        async for message in socket:
            if message.type == WSMsgType.TEXT:
                await socket.send_str(self._body(message.data))
        return socket


class _RpcFault(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _block(tag: str, head: int) -> int:
    if tag in ("latest", "safe", "finalized", "pending"):
        return head
    if tag == "earliest":
        return 0
    return int(tag, 16)


async def serve(history: History, port: int = 0) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(StubNode(history).app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    server = site._server
    assert server is not None
    sockets = getattr(server, "sockets", None) or []
    return runner, int(sockets[0].getsockname()[1])


async def _main(args: argparse.Namespace) -> None:
    history = History(
        args.events, logs_per_block=args.logs_per_block, head=args.blocks or None, seed=args.seed
    )
    runner, port = await serve(history, args.port)
    print(
        json.dumps(
            {
                "url": f"http://127.0.0.1:{port}/",
                "ws_url": f"ws://127.0.0.1:{port}/",
                "events": history.events,
                "head": history.head,
                "first_block": history.first_block,
            }
        ),
        flush=True,
    )
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--logs-per-block", type=int, default=20)
    parser.add_argument("--blocks", type=int, default=0, help="head block (0: the last with logs)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
