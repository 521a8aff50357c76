"""`bot run` SIGKILLed three times in each phase (backfill, hand-off, live), restarted each time.

The history is long enough that each phase lasts well over 2 s: ~3,000 fills (most of them ours,
booked by the hand-off in many small batches: ``accumulator.batch_events`` is small here) over
~100 blocks, built fast with automine off and
one ``evm_mine`` per batch (receipts awaited, so anvil's pool never piles up), and a backfill
stretched by ``rpc.requests_per_second`` and one-block windows. Every kill waits for progress
inside its phase (windows stored, batches booked, live fills hedged), and is checked from the
run's own log to land strictly between its phase's line and the next one's. The run that finally
completes a phase shows it still lasted >= 2 s after the earlier kills (the work left only shrinks,
so every killed run's phase lasted at least that long too).

At the end, a clean run on a fresh database (the killed runs also started with no database) on
the same chain must book the same trades and the same on-chain net per ticker (which hedges were
placed depends on where the drain passes ended, SPEC §4), and both databases keep the execution
invariants: unique ``client_order_id``, links summing exactly, hedged = the sum of what filled,
and |unhedged| below the threshold once idle.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.core import amounts
from bot.devnet.contracts import TxSender
from bot.devnet.plan import expected_net, make_plan
from bot.devnet.simulate import BackgroundSimulation, send_planned
from bot.store import queries
from tests.support.botproc import BotProcess, wait_caught_up, wait_for, write_config
from tests.support.chain import Chain

HISTORY_FILLS = 3000
TXS_PER_BLOCK = 21
REQUESTS_PER_SECOND = 30
MIN_PHASE_S = 2.0
LIVE_FILLS_PER_S = 6.0
THRESHOLD = Decimal(1)

CUTOFF = "cutoff at block"
BACKFILL_DONE = "backfill done"
HANDOFF_DONE = "hand-off drained"
LIVE = "live: following heads"
PHASES: dict[str, tuple[str, str | None]] = {
    "backfill": (CUTOFF, BACKFILL_DONE),
    "hand-off": (BACKFILL_DONE, HANDOFF_DONE),
    "live": (LIVE, None),
}
_WINDOW = re.compile(r"^blocks \d+-\d+ of \d+-\d+")
_FILLED = re.compile(r"^execution \d+ FILLED")
_BATCH = re.compile(r"^drain: booked \d+ events")
DRAIN_BATCH_EVENTS = 1  # one event per transaction keeps the hand-off long enough to kill inside


@dataclass(frozen=True)
class Line:
    at: float  # wall-clock timestamp loguru recorded
    message: str


@dataclass(frozen=True)
class Kill:
    phase: str
    seconds_into_phase: float
    log: Path


def _lines(bot: BotProcess) -> list[Line]:
    """This run's JSON log lines with their timestamps (a torn last line is skipped)."""
    if not bot.log_path.exists():
        return []
    found = []
    for raw in bot.log_path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(raw)["record"]
            found.append(Line(float(record["time"]["timestamp"]), str(record["message"])))
        except (ValueError, KeyError, TypeError):
            continue
    return found


def _first(lines: list[Line], text: str) -> Line | None:
    return next((line for line in lines if line.message.startswith(text)), None)


def _after(lines: list[Line], text: str) -> list[Line]:
    """The lines after the first one starting with ``text`` (empty if it is not there)."""
    for index, line in enumerate(lines):
        if line.message.startswith(text):
            return lines[index + 1 :]
    return []


def _count(lines: list[Line], pattern: re.Pattern[str]) -> int:
    return sum(1 for line in lines if pattern.match(line.message))


def _phase_seconds(bot: BotProcess, begin: str, end: str) -> float:
    lines = _lines(bot)
    first, last = _first(lines, begin), _first(lines, end)
    assert first is not None and last is not None, bot.log_tail()
    return last.at - first.at


Progressed = Callable[[Line, list[Line]], bool]
"""(the phase's own line, the lines after it) -> whether the run got far enough to be killed."""


def _kill_inside(bot: BotProcess, phase: str, progressed: Progressed) -> Kill:
    """Wait until the run made ``progressed`` progress inside ``phase``, then SIGKILL it there."""
    begin, end = PHASES[phase]

    def ready() -> bool:
        if not bot.running():
            raise AssertionError(f"bot exited before its {phase} kill:\n{bot.log_tail()}")
        lines = _lines(bot)
        if end is not None and _first(lines, end) is not None:
            raise AssertionError(f"the {phase} phase ended before its kill:\n{bot.log_tail()}")
        started = _first(lines, begin)
        return started is not None and progressed(started, _after(lines, begin))

    wait_for(
        ready, timeout_s=60, what=f"progress inside the {phase} phase", on_timeout=bot.log_tail
    )
    lines = _lines(bot)
    started = _first(lines, begin)
    assert started is not None
    assert end is None or _first(lines, end) is None, bot.log_tail()
    killed_at = time.time()
    bot.kill()
    assert bot.process is not None and bot.process.returncode == -9, "not killed by SIGKILL"
    # the next phase's line never appeared in this run: the kill landed strictly inside
    if end is not None:
        assert _first(_lines(bot), end) is None, f"{phase} kill landed after {end!r}"
    return Kill(phase, killed_at - started.at, bot.log_path)


def _windows(at_least: int) -> Progressed:
    """Backfill progress: ``at_least`` windows stored by this run."""
    return lambda _started, after: _count(after, _WINDOW) >= at_least


def _batches(at_least: int) -> Progressed:
    """Hand-off progress: ``at_least`` batches of events booked by this run's drain."""
    return lambda _started, after: _count(after, _BATCH) >= at_least


def _live_for(seconds: float, executions: int) -> Progressed:
    """Live for ``seconds`` and at least ``executions`` live fills hedged."""

    def progressed(started: Line, after: list[Line]) -> bool:
        return time.time() - started.at >= seconds and _count(after, _FILLED) >= executions

    return progressed


def _build_history(chain: Chain) -> dict[str, Decimal]:
    """~3,000 fills in ~100 blocks: automine off, a batch of sends, one evm_mine, receipts."""
    plan = make_plan(seed=404, fills=HISTORY_FILLS)
    rpc = chain.rpc
    rpc.call("evm_setAutomine", [False])
    sender = TxSender(rpc, max_unconfirmed=10**9)
    for first in range(0, len(plan), TXS_PER_BLOCK):
        for tx in plan[first : first + TXS_PER_BLOCK]:
            send_planned(sender, tx, chain.deployment)
        rpc.call("evm_mine", [])
        sender.flush()
    return expected_net(plan)


def _head(chain: Chain) -> int:
    return int(chain.rpc.call("eth_blockNumber", []), 16)


def _run_to_idle(config: Path, database: Path, chain: Chain) -> tuple[BotProcess, dict[str, Any]]:
    """Run until live and caught up with the (still) chain, then SIGTERM (must exit 0)."""
    bot = BotProcess(config).start()
    try:
        bot.wait_for_log(LIVE, timeout_s=90)
        report = wait_caught_up(database, _head(chain), bot=bot, timeout_s=60)
    finally:
        code = bot.stop()
    assert code == 0, bot.log_tail()
    return bot, report


def _trades(database: Path) -> list[tuple[Any, ...]]:
    keys = (
        "tx_hash",
        "log_index",
        "side",
        "inclusion",
        "kind",
        "block_number",
        "ticker",
        "shares",
        "direction",
        "price_usdc",
    )
    return sorted(tuple(row[k] for k in keys) for row in queries.trades(database))


def _onchain(report: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p["ticker"], p["onchain_net_shares"]) for p in report["positions"]]


def _assert_execution_invariants(database: Path, report: dict[str, Any]) -> None:
    executions = queries.executions(database)
    ids = [e["client_order_id"] for e in executions]
    assert len(ids) == len(set(ids)), "duplicate client_order_id"
    assert all(0 < len(i) <= 48 for i in ids)
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        links: dict[int, list[str]] = {}
        for execution_id, shares in conn.execute("SELECT execution_id, shares FROM execution_lots"):
            links.setdefault(int(execution_id), []).append(str(shares))
    finally:
        conn.close()
    hedged: dict[str, Decimal] = {}
    for e in executions:
        filled = amounts.from_text(e["filled_shares"])
        signed = filled if e["direction"] == "BUY" else amounts.sub(Decimal(0), filled)
        hedged[e["ticker"]] = amounts.add(hedged.get(e["ticker"], Decimal(0)), signed)
        linked = amounts.total([amounts.from_text(s) for s in links.get(e["id"], [])])
        if e["status"] in ("PENDING", "SUBMITTED"):
            expected = Decimal(e["shares"])
        elif e["status"] == "FILLED":
            expected = amounts.from_text(e["filled_shares"])
        else:
            expected = Decimal(0)
        assert linked == expected, f"links of execution {e['id']} ({e['status']}) sum to {linked}"
    assert report["idle"] is True, report
    for position in report["positions"]:
        assert Decimal(position["hedged_shares"]) == hedged.get(position["ticker"], 0), position
        if not position["parked"]:
            assert abs(Decimal(position["unhedged_shares"])) < THRESHOLD, position


@pytest.mark.timeout(300)
def test_sigkill_in_every_phase_then_same_books_as_a_clean_run(
    chain: Chain, tmp_path: Path
) -> None:
    expected = _build_history(chain)
    database = tmp_path / "killed" / "bot.db"  # no database at all: the starting state
    database.parent.mkdir()
    rpc_limit = (
        f"\n[rpc]\nrequests_per_second = {REQUESTS_PER_SECOND}\n"
        f"\n[accumulator]\nbatch_events = {DRAIN_BATCH_EVENTS}\n"
    )

    def config_for(db: Path) -> Path:
        return write_config(
            db.parent / "bot.toml",
            chain.deployment,
            ws_url=chain.ws_url,
            database=db,
            workers=4,
            batch_blocks=1,
            first_event_timeout_s=0.5,
            extra=rpc_limit,
        )

    config = config_for(database)
    kills: list[Kill] = []
    logs: set[Path] = set()

    def start() -> BotProcess:
        bot = BotProcess(config).start()
        assert bot.log_path not in logs, "each run writes a new log file"
        logs.add(bot.log_path)
        return bot

    # backfill: killed after 4, 8 and 12 stored windows of this run
    for windows in (4, 8, 12):
        kills.append(_kill_inside(start(), "backfill", _windows(windows)))
    # hand-off: the first of these runs completes the backfill; kills after 30/60/90 batches
    for index, batches in enumerate((30, 60, 90)):
        bot = start()
        kills.append(_kill_inside(bot, "hand-off", _batches(batches)))
        if index == 0:
            backfill_s = _phase_seconds(bot, CUTOFF, BACKFILL_DONE)
            assert backfill_s >= MIN_PHASE_S, f"backfill after 3 kills took {backfill_s:.2f} s"
            print(f"backfill completed after 3 kills in {backfill_s:.2f} s")
    # live: fills keep coming (automine) while runs are killed and restarted
    chain.rpc.call("evm_setAutomine", [True])
    simulation = BackgroundSimulation(
        chain.http_url, chain.deployment, seed=405, rate=LIVE_FILLS_PER_S
    ).start()
    try:
        for index in range(3):
            bot = start()
            kills.append(_kill_inside(bot, "live", _live_for(MIN_PHASE_S, executions=2)))
            if index == 0:
                handoff_s = _phase_seconds(bot, BACKFILL_DONE, HANDOFF_DONE)
                assert handoff_s >= MIN_PHASE_S, f"hand-off after 3 kills took {handoff_s:.2f} s"
                print(f"hand-off completed after 3 kills in {handoff_s:.2f} s")
    finally:
        live_stats = simulation.stop()
    assert simulation.error is None, simulation.error
    assert live_stats.fills > 0

    _final, killed_report = _run_to_idle(config, database, chain)

    clean_db = tmp_path / "clean" / "bot.db"
    clean_db.parent.mkdir()
    clean, clean_report = _run_to_idle(config_for(clean_db), clean_db, chain)
    for begin, end in ((CUTOFF, BACKFILL_DONE), (BACKFILL_DONE, HANDOFF_DONE)):
        seconds = _phase_seconds(clean, begin, end)
        assert seconds >= MIN_PHASE_S
        print(f"clean run: {begin!r} -> {end!r} in {seconds:.2f} s")

    assert [k.phase for k in kills].count("backfill") >= 3
    assert [k.phase for k in kills].count("hand-off") >= 3
    assert [k.phase for k in kills].count("live") >= 3
    assert len({k.log for k in kills}) == len(kills)

    assert _trades(database) == _trades(clean_db)
    assert len(_trades(database)) > HISTORY_FILLS // 2
    assert _onchain(killed_report) == _onchain(clean_report)
    for db, report in ((database, killed_report), (clean_db, clean_report)):
        _assert_execution_invariants(db, report)
        assert report["queue"]["failed"] == 0
    for key, value in live_stats.expected.items():
        expected[key] = amounts.add(expected.get(key, Decimal(0)), value)
    got = {p["ticker"]: Decimal(p["onchain_net_shares"]) for p in killed_report["positions"]}
    assert {k: v for k, v in got.items() if v} == {k: v for k, v in expected.items() if v}
    for kill in kills:
        print(
            f"{kill.phase:8} kill {kill.seconds_into_phase:5.2f} s into the phase ({kill.log.name})"
        )
