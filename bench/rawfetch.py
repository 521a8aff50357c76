"""The references a backfill is measured against, each run in a child process of its own:

- ``raw``: concurrent ``eth_getLogs`` of the range (aiohttp + a JSON decoder, ``--window``-block
  windows, ``--concurrency`` in flight), logs counted and dropped: the node's ceiling;
- ``web3``: a plain web3.py loop, ``contract.events.TakeOrderV2.get_logs`` per ``--window``
  blocks, as a script written without thought for speed would do.

Prints one JSON line: events, seconds (interpreter start-up excluded), rss_mb.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.botproc import vm_hwm_mb

ROOT = Path(__file__).resolve().parents[1]


async def raw(  # noqa: PLR0917 - the child's command line, in order
    url: str, address: str, start: int, end: int, window: int, concurrency: int
) -> int:
    import aiohttp

    from bot.core.abi import ORDERBOOK_TOPICS

    windows = [(a, min(a + window - 1, end)) for a in range(start, end + 1, window)]
    gate = asyncio.Semaphore(concurrency)

    async def fetch(session: aiohttp.ClientSession, first: int, last: int, rid: int) -> int:
        body = {
            "jsonrpc": "2.0",
            "id": rid,
            "method": "eth_getLogs",
            "params": [
                {
                    "address": address,
                    "topics": [list(ORDERBOOK_TOPICS)],
                    "fromBlock": hex(first),
                    "toBlock": hex(last),
                }
            ],
        }
        async with gate, session.post(url, json=body) as response:
            answer = json.loads(await response.read())
        return len(answer["result"])

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        counts = await asyncio.gather(
            *(fetch(session, a, b, i) for i, (a, b) in enumerate(windows))
        )
    return sum(counts)


def web3_loop(url: str, address: str, start: int, end: int, window: int) -> int:
    from web3 import Web3

    abi = json.loads((ROOT / "bot/devnet/artifacts/TestOrderBook.json").read_text())["abi"]
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 600}))
    contract = w3.eth.contract(address=Web3.to_checksum_address(address), abi=abi)
    count = 0
    for first in range(start, end + 1, window):
        last = min(first + window - 1, end)
        count += len(contract.events.TakeOrderV2.get_logs(from_block=first, to_block=last))
    return count


def child(  # noqa: PLR0917 - the child's command line, in order
    kind: str, url: str, address: str, start: int, end: int, window: int, concurrency: int = 4
) -> dict[str, Any]:
    """Run one reference in a fresh interpreter; its JSON report."""
    command = [
        sys.executable, "-m", "bench.rawfetch", kind, url, address,
        str(start), str(end), str(window), str(concurrency),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env, cwd=ROOT)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=("raw", "web3"))
    parser.add_argument("url")
    parser.add_argument("address")
    parser.add_argument("start", type=int)
    parser.add_argument("end", type=int)
    parser.add_argument("window", type=int)
    parser.add_argument("concurrency", type=int)
    a = parser.parse_args()
    began = time.perf_counter()
    if a.kind == "raw":
        events = asyncio.run(raw(a.url, a.address, a.start, a.end, a.window, a.concurrency))
    else:
        events = web3_loop(a.url, a.address, a.start, a.end, a.window)
    seconds = time.perf_counter() - began
    rss = vm_hwm_mb()  # not ru_maxrss: it includes the parent's peak (see bench/botproc.py)
    print(json.dumps({"events": events, "seconds": seconds, "rss_mb": rss}))


if __name__ == "__main__":
    main()
