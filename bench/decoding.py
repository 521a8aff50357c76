"""(b) Decoding floors, per log, on the same ``eth_getLogs`` answer.

JSON: the whole answer (``{"jsonrpc", "id", "result": [...]}``) of one 500-block window of the
stub node's history (synthetic, ABI-exact orderbook logs, same field layout as anvil's) decoded
by ``json.loads``, ``orjson.loads``, ``msgspec.json.decode`` (untyped, and typed into a
``Struct`` of the log fields: JSON → fields without an intermediate dict), then the bot's own
JSON dict → ``RawLog`` (``bot.chain.parse.parse_log``).

ABI, per ``TakeOrderV2``: ``eth_abi.decode`` of the event's types, the bot's owner-only fast
path (``bot.core.abi.order_owners``) and its full decode (``bot.core.abi.decode``: eth_abi plus
typed dataclasses). ``faster-eth-abi`` cannot share the project's venv (it pins eth-abi 5 and
eth-utils 5; web3 8 needs 6), so it runs in a side venv of its own under the cache folder,
against that venv's eth_abi on the same bytes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.context import Context
from bench.report import Row, Section, log, median, ratio
from bench.stub_node import History
from bot.chain.parse import parse_log
from bot.core import abi
from bot.core.abi import TAKE_ORDER_V2_TYPES, TOPIC_TAKE_ORDER_V2

NAME = "decode"
TITLE = "Decoding floors: JSON and ABI"

try:
    import msgspec

    class Log(msgspec.Struct):
        """The fields of one ``eth_getLogs`` entry, decoded straight from the JSON text."""

        blockNumber: str  # noqa: N815 - the JSON-RPC field names
        blockHash: str  # noqa: N815
        transactionHash: str  # noqa: N815
        transactionIndex: str  # noqa: N815
        logIndex: str  # noqa: N815
        address: str
        topics: list[str]
        data: str
        removed: bool = False

    class Answer(msgspec.Struct):
        result: list[Log]

except ImportError:  # pragma: no cover - measured only when installed
    pass

SIDE_SCRIPT = """
import json, sys, time
import eth_abi, faster_eth_abi
types = tuple(json.loads(sys.argv[1]))
datas = [bytes.fromhex(line) for line in open(sys.argv[2]).read().split()]
runs = int(sys.argv[3])
times = {"eth_abi": [], "faster_eth_abi": []}
for _ in range(runs):  # interleaved, as in the main process
    for name, fn in (("eth_abi", eth_abi.decode), ("faster_eth_abi", faster_eth_abi.decode)):
        t = time.perf_counter()
        for d in datas:
            fn(types, d)
        times[name].append((time.perf_counter() - t) / len(datas))
def per(name):
    ordered = sorted(times[name])
    return ordered[len(ordered) // 2]
assert faster_eth_abi.decode(types, datas[0]) == eth_abi.decode(types, datas[0])
version = getattr(eth_abi, "__version__", "?")
print(json.dumps({"eth_abi": per("eth_abi"), "faster_eth_abi": per("faster_eth_abi"),
                  "eth_abi_version": version}))
"""


def interleaved(
    candidates: dict[str, tuple[Callable[[], Any], int]], runs: int
) -> dict[str, float]:
    """Seconds per item of each candidate, the median of ``runs`` rounds; each round times every
    candidate once in turn, so a burst of load from a neighbour hits them alike."""
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(runs):
        for name, (fn, items) in candidates.items():
            began = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - began) / items)
    return {name: median(values) for name, values in times.items()}


def side_venv(cache: Path, *, install: bool = True) -> Path | None:
    """A venv with faster-eth-abi (created once when ``install``; None when there is none and
    pip cannot or may not install it)."""
    venv = cache / "fea-venv"
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import faster_eth_abi"]
    if python.exists() and subprocess.run(probe, capture_output=True, check=False).returncode == 0:
        return python
    if not install:
        return None
    log("creating a side venv with faster-eth-abi ...")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "faster-eth-abi"],
            check=True,
            capture_output=True,
            timeout=600,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        log(f"faster-eth-abi unavailable: {exc}")
        return None
    return python


def run(ctx: Context) -> Section:
    runs = 1 if ctx.quick else max(9, 3 * ctx.runs)  # each round is tens of ms
    history = History(ctx.size(20_000, 2_000), logs_per_block=20)
    texts = history.logs(1, 500)
    body = ('{"jsonrpc":"2.0","id":1,"result":[' + ",".join(texts) + "]}").encode()
    n = len(texts)
    parsed = json.loads(body)["result"]
    raws = [parse_log(item) for item in parsed]
    takes = [r for r in raws if r.topic0 == TOPIC_TAKE_ORDER_V2]
    t = len(takes)
    candidates: dict[str, tuple[Callable[[], Any], int]] = {
        "json.loads": (lambda: json.loads(body), n)
    }
    present = ["json (stdlib)"]
    missing = []
    try:
        import orjson

        candidates["orjson.loads"] = (lambda: orjson.loads(body), n)
        present.append(f"orjson {orjson.__version__}")
    except ImportError:
        missing.append("orjson")
    try:
        import msgspec

        typed = msgspec.json.Decoder(Answer)
        untyped = msgspec.json.Decoder()
        candidates["msgspec.json.decode"] = (lambda: untyped.decode(body), n)
        candidates["msgspec typed Struct"] = (lambda: typed.decode(body), n)
        present.append(f"msgspec {msgspec.__version__}")
    except ImportError:
        missing.append("msgspec")
    candidates["parse_log"] = (lambda: [parse_log(item) for item in parsed], n)
    candidates["eth_abi"] = (
        lambda: [abi._abi_decode(TAKE_ORDER_V2_TYPES, r.data) for r in takes],
        t,
    )
    candidates["order_owners"] = (lambda: [abi.order_owners(r) for r in takes], t)
    candidates["abi.decode"] = (lambda: [abi.decode(r) for r in takes], t)
    us = interleaved(candidates, runs)
    side: dict[str, Any] = {}
    # getattr: a run started before ``install`` existed imports this module lazily
    python = side_venv(ctx.cache, install=getattr(ctx, "install", True))
    if python is not None:
        datas = ctx.work / "take-datas.txt"
        datas.write_text("\n".join(r.data.hex() for r in takes))
        done = subprocess.run(  # noqa: PLW1510 - the exit code is checked below
            [
                str(python),
                "-c",
                SIDE_SCRIPT,
                json.dumps(TAKE_ORDER_V2_TYPES),
                str(datas),
                str(runs),
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode == 0:
            side = json.loads(done.stdout.strip().splitlines()[-1])
        else:
            log(done.stderr[-2000:])
    us = {k: v * 1e6 for k, v in us.items()}
    js = us["json.loads"]
    rows = [
        Row("JSON answer → Python, per log: `json.loads`", f"{js:.2f} µs", "", "", "(reference)"),
    ]
    for key in ("orjson.loads", "msgspec.json.decode", "msgspec typed Struct"):
        if key in us:
            rows.append(
                Row(
                    f"… `{key}`",
                    f"{us[key]:.2f} µs",
                    f"json.loads {js:.2f} µs",
                    ratio(us[key], js),
                    "lower is better",
                )
            )
    rows.append(
        Row(
            "JSON dict → `RawLog` (`bot.chain.parse.parse_log`), per log",
            f"{us['parse_log']:.2f} µs",
            f"json.loads {js:.2f} µs",
            ratio(us["parse_log"], js),
            "(26 µs before)",
        )
    )
    ea = us["eth_abi"]
    rows.append(
        Row(
            "owner only, per TakeOrderV2: `bot.core.abi.order_owners`",
            f"{us['order_owners']:.2f} µs",
            f"eth_abi.decode {ea:.1f} µs",
            ratio(us["order_owners"], ea),
            "owner check before any decode",
        )
    )
    rows.append(
        Row(
            "full decode, per TakeOrderV2: `bot.core.abi.decode`",
            f"{us['abi.decode']:.1f} µs",
            f"eth_abi.decode {ea:.1f} µs",
            ratio(us["abi.decode"], ea),
            "(only our 10 %)",
        )
    )
    if side:
        rows.append(
            Row(
                "`faster_eth_abi.decode`, per TakeOrderV2 (side venv)",
                f"{side['faster_eth_abi'] * 1e6:.1f} µs",
                f"eth_abi {side.get('eth_abi_version', '?')} there {side['eth_abi'] * 1e6:.1f} µs",
                ratio(side["faster_eth_abi"], side["eth_abi"]),
                "(candidate)",
            )
        )
    table = "\n".join(f"| {k} | {v:.2f} |" for k, v in us.items())
    mb = len(body) / 1e6
    data_bytes = sum(len(r.data) for r in takes) // max(1, t)
    missing_text = "; missing: " + ", ".join(missing) if missing else ""
    body_md = f"""Input: one 500-block `eth_getLogs` answer of the stub node ({n:,} logs,
{mb:.1f} MB, {t:,} of them `TakeOrderV2`, ~{data_bytes:,} data bytes each); medians of
{runs} rounds, the candidates interleaved in each round.
Present in the venv: {", ".join(present)}{missing_text} (orjson and msgspec
are not project dependencies: installed into .venv for this benchmark only).
faster-eth-abi: {"measured in a side venv (`" + str(python) + "`)" if side else "not available"}.

| step | µs per item |
|---|---|
{table}
"""
    return Section(NAME, TITLE, rows, body_md)
