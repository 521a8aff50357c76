"""(f) Live latency: a log on the socket → its hedge order sent to the broker, per
fill, over ≥ 1,000 fills, with a per-stage breakdown.

Fresh anvil (automine), the real ``Runner`` (what ``bot run`` runs) in this process, with the
dry-run broker and then with the real ``AlpacaBroker`` against the fake Alpaca server
(``bot.devnet.fake_alpaca``, loopback HTTP, market open, fills in 50 ms); once live, our takes
are sent one at a time (the next only after the previous one's
trade is committed), so each figure is one event alone. Stage marks come from the bot's own
timestamps plus wrappers installed on its classes for the run (observation only, no bot change):

- **socket**: ``LiveLog.received_at`` (set by ``bot.chain.ws`` when the bytes completing the
  notification's frame are read off the socket, before it waits in any queue);
- **queued**: ``Runner._store_logs`` returned (the log is in the durable queue);
- **head reconciled**: ``Session.drain`` entered for the pass that books it (after
  ``Follower.on_head``: its logs read by hash, a read started when the hint or the head
  arrived, then checked and the checkpoint moved);
- **booked**: ``Desk.run`` entered (the pass's last batch and its hedge decisions committed);
- **order sent**: ``DryRunBroker.place`` / ``AlpacaBroker.place`` entered (the HTTP request to
  the fake is made inside it);
- **trade committed**: the runner's ``live_log_to_trade_seconds`` observation (after the pass).

Only fills that move the net past the threshold (1 share) send an order; the others have no
"order sent" stage and are counted apart.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from loguru import logger

from bench.context import Context
from bench.live_latency import our_takes, write_config
from bench.report import Row, Section, percentile
from bot.broker.alpaca import AlpacaBroker
from bot.broker.dry_run import DryRunBroker
from bot.config import load
from bot.devnet.anvil import AnvilProcess
from bot.devnet.contracts import TxSender
from bot.devnet.deploy import deploy
from bot.devnet.fake_alpaca import FakeAlpaca
from bot.devnet.rpc import JsonRpcClient
from bot.devnet.simulate import send_planned
from bot.engine.desk import Desk
from bot.sync.runner import Runner, Session

NAME = "live"
TITLE = "Live latency: log on the socket → hedge order sent"
WAIT_S = 30.0
STAGES = ("socket", "queued", "reconciled", "booked", "sent")


@contextmanager
def marking(marks: list[tuple[str, float]]) -> Iterator[None]:
    """Wrap the bot's classes to append (stage, monotonic time) marks; restored on exit."""
    originals: list[tuple[Any, str, Any]] = []

    def wrap(cls: Any, name: str, make: Any) -> None:
        original = getattr(cls, name)
        originals.append((cls, name, original))
        setattr(cls, name, make(original))

    def store_logs(original: Any) -> Any:
        async def wrapper(self: Runner, batch: list[Any]) -> None:
            for item in batch:
                marks.append(("socket", item.received_at))
            await original(self, batch)
            if batch:
                marks.append(("queued", time.monotonic()))

        return wrapper

    def drain(original: Any) -> Any:
        async def wrapper(self: Session) -> int | None:
            marks.append(("reconciled", time.monotonic()))
            return await original(self)  # type: ignore[no-any-return]

        return wrapper

    def desk_run(original: Any) -> Any:
        async def wrapper(self: Desk, created: list[Any]) -> None:
            marks.append(("booked", time.monotonic()))
            await original(self, created)

        return wrapper

    def place(original: Any) -> Any:
        async def wrapper(self: Any, order: Any) -> Any:
            marks.append(("sent", time.monotonic()))
            return await original(self, order)

        return wrapper

    wrap(Runner, "_store_logs", store_logs)
    wrap(Session, "drain", drain)
    wrap(Desk, "run", desk_run)
    wrap(DryRunBroker, "place", place)
    wrap(AlpacaBroker, "place", place)
    try:
        yield
    finally:
        for cls, name, original in reversed(originals):
            setattr(cls, name, original)


def stages_of(marks: list[tuple[str, float]], committed: float) -> dict[str, float] | None:
    """The stage times of one fill from its marks: the first socket/queued mark, the last pass
    (reconciled → booked) before the commit, and the order sent in that pass if any."""
    first = {name: t for name, t in reversed(marks) if name in ("socket", "queued")}
    if "socket" not in first or "queued" not in first:
        return None
    out = {"socket": first["socket"], "queued": first["queued"]}
    passes = [t for name, t in marks if name == "reconciled" and t <= committed]
    booked = [t for name, t in marks if name == "booked" and t <= committed]
    if not passes or not booked:
        return None
    out["reconciled"], out["booked"] = passes[-1], booked[-1]
    sent = [t for name, t in marks if name == "sent" and out["booked"] <= t <= committed]
    if sent:
        out["sent"] = sent[0]
    out["committed"] = committed
    return out


FAKE_KEY, FAKE_SECRET = "bench-key-id", "bench-secret"


def broker_config(base_url: str) -> str:
    return f"""
[broker]
kind = "alpaca"

[broker.alpaca]
base_url = "{base_url}"
api_key_id = "{FAKE_KEY}"
api_secret = "{FAKE_SECRET}"
poll_interval_s = 0.2
requests_per_minute = 1000000
"""


async def measure(
    folder: Path, fills: int, warmup: int, broker: str = "dry-run", pace_s: float = 0.0
) -> dict[str, Any]:
    fake: FakeAlpaca | None = None
    if broker == "alpaca":
        # no 200/min rate limit here: what is measured is the bot's path, not Alpaca's quota
        fake = FakeAlpaca(key_id=FAKE_KEY, secret=FAKE_SECRET, rate_limit_per_min=10**6)
        await fake.start()
    try:
        return await _measure(folder, fills, warmup, fake, pace_s)
    finally:
        if fake is not None:
            await fake.stop()


async def _measure(
    folder: Path, fills: int, warmup: int, fake: FakeAlpaca | None, pace_s: float
) -> dict[str, Any]:
    logger.remove()
    logger.add(folder / "bot.log", level="INFO")
    marks: list[tuple[str, float]] = []
    per_fill: list[dict[str, float]] = []
    send_to_socket: list[float] = []
    with (
        AnvilProcess(folder / "anvil.log") as anvil,
        JsonRpcClient(anvil.http_url) as rpc,
        marking(marks),
    ):
        deployment = deploy(rpc)
        config = write_config(folder, anvil, deployment, 4)
        if fake is not None:
            config.write_text(config.read_text() + broker_config(fake.base_url))
        loaded = load(config)
        stop = asyncio.Event()
        runner = Runner(loaded, stop)
        observed: list[float] = []
        arrived = asyncio.Event()
        histogram = runner.metrics.live_log_to_trade_seconds
        original = histogram.observe

        def recording(value: float, *args: object, **kwargs: object) -> None:
            observed.append(time.monotonic())
            arrived.set()
            original(value)

        setattr(histogram, "observe", recording)  # noqa: B010 - record every observation
        task = asyncio.create_task(runner.run())
        deadline = time.monotonic() + WAIT_S
        while not runner.live:
            if task.done():
                task.result()
                raise SystemExit("the runner ended before going live")
            if time.monotonic() > deadline:
                raise SystemExit(f"not live after {WAIT_S} s; see {folder / 'bot.log'}")
            await asyncio.sleep(0.01)
        sender = TxSender(rpc)
        plan = our_takes(seed=7)
        for index in range(warmup + fills):
            tx = next(plan)
            before = len(observed)
            marks.clear()
            arrived.clear()
            sent_at = time.monotonic()
            await asyncio.to_thread(send_planned, sender, tx, deployment)
            while len(observed) == before:
                try:
                    await asyncio.wait_for(arrived.wait(), WAIT_S)
                except TimeoutError:
                    raise SystemExit(f"fill {index} was not booked within {WAIT_S} s") from None
                arrived.clear()
            await asyncio.to_thread(sender.flush)
            if pace_s:  # pacing the load (not synchronisation): keep under a request quota
                await asyncio.sleep(max(0.0, sent_at + pace_s - time.monotonic()))
            if index < warmup:
                continue
            stages = stages_of(list(marks), observed[before])
            if stages is not None:
                per_fill.append(stages)
                send_to_socket.append(stages["socket"] - sent_at)
        stop.set()
        await task
    return {"fills": per_fill, "send_to_socket": send_to_socket}


def _ms(values: list[float]) -> str:
    if not values:
        return "| - | - | - | - | 0 |"
    ms = [v * 1000 for v in values]
    return (
        f"| {statistics.median(ms):.2f} | {percentile(ms, 90):.2f} | {percentile(ms, 99):.2f} "
        f"| {max(ms):.2f} | {len(ms):,} |"
    )


def _figures(result: dict[str, Any], warmup: int, broker: str) -> tuple[list[Row], str]:
    per_fill = result["fills"]
    hedged = [f for f in per_fill if "sent" in f]
    total = [f["sent"] - f["socket"] for f in hedged]
    to_trade = [f["committed"] - f["socket"] for f in per_fill]
    rows = [
        Row(
            f"{broker}: log on the socket → hedge order sent, p99 ({len(hedged):,} orders)",
            f"{percentile(total, 99) * 1000:.2f} ms" if total else "-",
            f"median {statistics.median(total) * 1000:.2f} ms" if total else "",
            "",
            "p99 ≤ 10 ms",
        ),
        Row(
            f"{broker}: log on the socket → trade committed, p99 ({len(to_trade):,} fills)",
            f"{percentile(to_trade, 99) * 1000:.2f} ms" if to_trade else "-",
            "p99 8.9 ms over 200 fills before (quiet machine)",
            "",
            "",
        ),
    ]
    spans = [
        ("socket → queued", "socket", "queued", per_fill),
        ("queued → head reconciled", "queued", "reconciled", per_fill),
        ("head reconciled → booked", "reconciled", "booked", per_fill),
        ("booked → order sent", "booked", "sent", hedged),
        ("**socket → order sent**", "socket", "sent", hedged),
        ("socket → trade committed", "socket", "committed", per_fill),
    ]
    table = "\n".join(
        f"| {label} " + _ms([f[b] - f[a] for f in group]) for label, a, b, group in spans
    )
    send = result["send_to_socket"]
    body = f"""### {broker}

{len(per_fill):,} of our fills after {warmup} warm-up, {len(hedged):,} of which sent an order
(the others moved the net less than 1 share, or found the ticker's previous order still in
flight). eth_sendTransaction → socket (mining and delivery, not the bot's): median
{statistics.median(send) * 1000 if send else 0:.2f} ms.

| stage | median ms | p90 ms | p99 ms | max ms | n |
|---|---|---|---|---|---|
{table}
"""
    return rows, body


def run(ctx: Context) -> Section:
    import tempfile

    warmup = ctx.size(10, 2)
    rows: list[Row] = []
    bodies: list[str] = []
    # against the fake the client's budget is lifted (broker.alpaca.requests_per_minute):
    # what is measured is the bot's path, not Alpaca's quota
    plans = {"dry-run": (ctx.size(1_000, 20), 0.0), "alpaca": (ctx.size(1_000, 20), 0.0)}
    for broker, (fills, pace_s) in plans.items():
        label = "dry-run broker" if broker == "dry-run" else "fake Alpaca"
        with tempfile.TemporaryDirectory(prefix=f"bench-live-{broker}-", dir=ctx.work) as folder:
            try:
                result = asyncio.run(measure(Path(folder), fills, warmup, broker, pace_s))
            except SystemExit as stopped:  # one broker's failure must not hide the other's figures
                rows.append(
                    Row(f"{label}: log on the socket → hedge order sent", "failed", "", "", "")
                )
                bodies.append(f"### {label}\n\nThe run stopped: {stopped}.\n")
                continue
        more_rows, body = _figures(result, warmup, label)
        if broker == "alpaca":
            body += (
                "\nThe client's request budget is lifted for the fake "
                "(`broker.alpaca.requests_per_minute = 1000000`, the fake's own limit likewise): "
                "at Alpaca's 200 a minute, 1,000 fills at full speed would wait on the quota.\n"
            )
        rows += more_rows
        bodies.append(body)
    bodies.append(
        """Anvil automines one block per transaction; fills are sent one at a time, the next once
the previous trade is committed. The "socket" mark is `bot.chain.ws`'s stamp, taken when the
frame's bytes are read off the socket (time queued behind other frames counts)."""
    )
    return Section(NAME, TITLE, rows, "\n".join(bodies))
