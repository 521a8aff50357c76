"""Issue 3's crash tests: a draining process SIGKILLed over and over ends exactly where one
uninterrupted run ends; and a second draining process refuses to start beside the first.

Both runs start from byte-identical copies of one seed database (so they share the instance id,
hence the client_order_ids). The worker drains in passes that end on a fixed grid of blocks and
hedges the net at the end of each pass (SPEC §4), so both runs decide the same hedges and every
table matches row for row. Kills come in three kinds, in turn:

- *paused*: the worker stops at its first broker call of the drain (``--pause-at-place``, a broker
  call that does not return), so the kill lands between a committed PENDING execution and the
  booking of its broker outcome;
- *timed-events*: the test polls the database and kills as soon as a random number (1..150) of
  events more than at the worker's start are committed, wherever the worker then is (preparing or
  applying the next batch, committing, placing an order);
- *timed-executions*: likewise, once a random number (1..15) of new executions are committed, so
  the kill lands just after a PENDING commit (before or during the booking of its outcome).

No kill lands before work begins: each one waits for the processed count to exceed its value when
that worker was started.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from crash_kit import Probe, Seed, Worker, build_seed, copy_seed, dump_all, read_rows, wait_until

from bot.core import amounts
from bot.store.lock import lock_path

N_LOGS = 12_000  # >= 10,000 events, half pending; the kills use well under half of those
SEED = 11
KILLS = 24
THRESHOLD = Decimal(1)  # the worker's threshold_shares
MAX_STEP = 150
RUN_TIMEOUT_S = 90.0
LINE_TIMEOUT_S = 30.0

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Seed:
    return build_seed(tmp_path_factory.mktemp("crash-seed") / "seed.db", N_LOGS, seed=SEED)


@dataclass(frozen=True)
class Kill:
    mode: str  # "paused", "timed-events" or "timed-executions"
    processed_at_start: int
    processed_at_kill: int
    in_flight_at_kill: tuple[tuple[str, str, str], ...]  # (ticker, client_order_id, status)


def _kill_paused(db: Path, log: Path) -> Kill:
    probe = Probe(db)
    start = probe.processed()
    worker = Worker.start(db, log, "--pause-at-place")
    try:
        worker.expect("locked", LINE_TIMEOUT_S)
        worker.expect("started", LINE_TIMEOUT_S)
        coid = worker.expect("placing", LINE_TIMEOUT_S).split()[1]
        processed = probe.processed()
        assert processed > start, "the worker reached a broker call without committing progress"
        assert any(c == coid and s == "PENDING" for _, c, s in probe.in_flight())
        worker.sigkill()
        return Kill("paused", start, processed, tuple(probe.in_flight()))
    finally:
        worker.stop()
        probe.close()


def _kill_timed(db: Path, log: Path, *, events: int, executions: int) -> Kill:
    """Kill once ``events`` more events and ``executions`` more executions are committed."""
    probe = Probe(db)
    start, start_executions = probe.processed(), probe.executions()
    worker = Worker.start(db, log)
    try:

        def progressed() -> bool:
            if worker.process.poll() is not None:
                raise AssertionError(f"worker exited ({worker.process.returncode}) before a kill")
            return (
                probe.processed() >= start + events
                and probe.executions() >= start_executions + executions
            )

        wait_until(progressed, timeout_s=RUN_TIMEOUT_S, what="committed progress")
        worker.sigkill()
        mode = "timed-executions" if executions else "timed-events"
        return Kill(mode, start, probe.processed(), tuple(probe.in_flight()))
    finally:
        worker.stop()
        probe.close()


def _run_to_completion(db: Path, log: Path) -> list[str]:
    worker = Worker.start(db, log)
    try:
        code = worker.finish(RUN_TIMEOUT_S)
        assert code == 0, f"clean run exited {code}; log:\n{worker.log_tail()}"
        lines: list[str] = []
        while (line := worker.lines.get(timeout=LINE_TIMEOUT_S)) is not None:
            lines.append(line)
        return lines
    finally:
        worker.stop()


def _signed(direction: str, shares: Decimal) -> Decimal:
    return shares if direction == "BUY" else amounts.sub(amounts.ZERO, shares)


def _check_answer_key(db: Path, seed: Seed) -> None:
    """Checks independent of the converter and of the other run."""
    assert read_rows(db, "SELECT status, COUNT(*) FROM events GROUP BY status") == [
        ("processed", seed.n_logs)
    ]
    expected = [
        (f.side.value, f.ticker, f.direction.value, f.shares, f.usdc_amount) for f in seed.expected
    ]
    booked = [
        (side, ticker, direction, amounts.from_text(shares), amounts.from_text(usdc))
        for side, ticker, direction, shares, usdc in read_rows(
            db, "SELECT side, ticker, direction, shares, usdc_amount FROM trades ORDER BY id"
        )
    ]
    assert booked == expected  # every fill of ours exactly once, in queue order, exact amounts

    expected_net: dict[str, Decimal] = defaultdict(lambda: amounts.ZERO)
    for fill in seed.expected:
        signed = _signed(fill.direction.value, fill.shares)
        expected_net[fill.ticker] = amounts.add(expected_net[fill.ticker], signed)
    trades_net: dict[str, Decimal] = defaultdict(lambda: amounts.ZERO)
    for ticker, direction, shares in read_rows(db, "SELECT ticker, direction, shares FROM trades"):
        signed = _signed(direction, amounts.from_text(shares))
        trades_net[ticker] = amounts.add(trades_net[ticker], signed)
    assert trades_net == expected_net
    assert len(expected_net) == 3

    executions = read_rows(
        db, "SELECT id, ticker, direction, client_order_id, status, filled_shares FROM executions"
    )
    assert len(executions) >= 36  # dozens of executions over several tickers
    assert {row[1] for row in executions} == set(expected_net)
    coids = [row[3] for row in executions]
    assert len(set(coids)) == len(coids)
    (instance_id,) = read_rows(db, "SELECT value FROM meta WHERE key = 'instance_id'")[0]
    assert all(coid == f"bot-{instance_id}-{eid}" for eid, _, _, coid, _, _ in executions)
    assert {row[4] for row in executions} == {"FILLED"}  # dry-run fills all; nothing in flight

    links: dict[int, Decimal] = defaultdict(lambda: amounts.ZERO)
    for eid, shares in read_rows(db, "SELECT execution_id, shares FROM execution_lots"):
        links[int(eid)] = amounts.add(links[int(eid)], amounts.from_text(shares))
    hedged: dict[str, Decimal] = defaultdict(lambda: amounts.ZERO)
    for eid, ticker, direction, _, _, filled in executions:
        assert links[eid] == amounts.from_text(filled), eid
        hedged[ticker] = amounts.add(hedged[ticker], _signed(direction, amounts.from_text(filled)))

    positions = read_rows(db, "SELECT ticker, onchain_net, hedged, in_flight FROM positions")
    assert {row[0] for row in positions} == set(expected_net)
    for ticker, net, hedged_text, in_flight in positions:
        assert amounts.from_text(net) == expected_net[ticker], ticker
        assert amounts.from_text(hedged_text) == hedged[ticker], ticker
        assert amounts.from_text(in_flight) == 0, ticker
        unhedged = amounts.add(expected_net[ticker], hedged[ticker])
        assert abs(unhedged) < THRESHOLD, (ticker, unhedged)


def test_sigkilled_drain_ends_exactly_like_one_uninterrupted_run(
    seed: Seed, tmp_path: Path
) -> None:
    began = time.monotonic()
    db_a = copy_seed(seed, tmp_path / "a.db")
    db_b = copy_seed(seed, tmp_path / "b.db")
    logs = tmp_path / "logs"
    logs.mkdir()

    _run_to_completion(db_b, logs / "b.log")  # B: one uninterrupted run

    rng = random.Random(SEED)
    kills: list[Kill] = []
    for number in range(KILLS):
        log = logs / f"a-{number:02d}.log"
        if number % 3 == 0:
            kills.append(_kill_paused(db_a, log))
        elif number % 3 == 1:  # right after a batch commit that crossed a random event count
            kills.append(_kill_timed(db_a, log, events=rng.randint(1, MAX_STEP), executions=0))
        else:  # right after a random execution's PENDING commit (or its booking)
            step = rng.randint(1, MAX_STEP // 10)
            kills.append(_kill_timed(db_a, log, events=1, executions=step))
    assert len(kills) == KILLS >= 20
    processed_by_kills = kills[-1].processed_at_kill
    pending_in_seed = seed.n_logs - seed.stored_processed
    assert seed.stored_processed > 0 and pending_in_seed >= 4_000
    # room to spare: 20+ kills always fit
    assert processed_by_kills - seed.stored_processed < pending_in_seed // 2
    final = _run_to_completion(db_a, logs / "a-final.log")  # A: the final clean run
    assert final[-1].startswith("done "), final
    done = dict(part.split("=") for part in final[-1].removeprefix("done ").split())
    assert int(done["processed"]) == seed.n_logs
    assert int(done["events"]) == seed.n_logs - processed_by_kills  # nothing processed twice

    dump_a, dump_b = dump_all(db_a), dump_all(db_b)
    assert dump_a.keys() == dump_b.keys()
    for table in ("trades", "positions", "executions", "execution_lots", "lots", "events"):
        assert dump_a[table] == dump_b[table], table
        assert dump_a[table], table
    for table in dump_a:  # and every other table, row for row (timestamps aside)
        assert dump_a[table] == dump_b[table], table
    _check_answer_key(db_a, seed)

    pending_kills = [k for k in kills if any(s == "PENDING" for _, _, s in k.in_flight_at_kill)]
    by_mode = Counter(k.mode for k in pending_kills)
    assert by_mode["paused"] == KILLS // 3  # every paused kill left a PENDING execution behind
    for kill in kills:
        assert kill.processed_at_kill > kill.processed_at_start
        tickers = [ticker for ticker, _, _ in kill.in_flight_at_kill]
        assert len(tickers) == len(set(tickers))  # at most one execution in flight per ticker
    print(
        f"\ncrash test: {KILLS} SIGKILLs, {len(pending_kills)} with a PENDING execution not yet "
        f"booked ({dict(by_mode)}); events processed before "
        f"each kill: {[k.processed_at_kill - k.processed_at_start for k in kills]}; "
        f"{len(dump_a['executions'])} executions; {time.monotonic() - began:.1f} s"
    )


def test_second_draining_process_refuses_then_starts_once_the_first_is_sigkilled(
    seed: Seed, tmp_path: Path
) -> None:
    db = copy_seed(seed, tmp_path / "c.db")
    first = Worker.start(db, tmp_path / "first.log", "--pause-at-place")
    second: Worker | None = None
    third: Worker | None = None
    try:
        first.expect("locked", LINE_TIMEOUT_S)
        first.expect("started", LINE_TIMEOUT_S)
        coid = first.expect("placing", LINE_TIMEOUT_S).split()[1]  # mid-drain, holding the lock
        before = dump_all(db)

        began = time.monotonic()
        second = Worker.start(db, tmp_path / "second.log")
        assert second.finish(LINE_TIMEOUT_S) == 3
        refused_in = time.monotonic() - began
        message = second.log_tail()
        assert "refusing to start" in message
        assert str(lock_path(db)) in message
        assert f"pid {first.process.pid}" in message
        assert second.lines.get(timeout=LINE_TIMEOUT_S) is None  # it never said "locked"
        assert refused_in < 10.0  # it does not wait for the lock (LOCK_NB): interpreter start-up
        assert first.process.poll() is None  # the first one is unharmed ...
        assert dump_all(db) == before  # ... and the refused one wrote nothing

        first.sigkill()
        began = time.monotonic()
        third = Worker.start(db, tmp_path / "third.log", "--pause-at-place")
        third.expect("locked", LINE_TIMEOUT_S)  # the kernel released the dead holder's lock
        locked_in = time.monotonic() - began
        third.expect("started", LINE_TIMEOUT_S)
        # it resolved the first one's PENDING execution, then went on with new events
        assert read_rows(
            db, "SELECT status, broker_order_id FROM executions WHERE client_order_id = ?", (coid,)
        ) == [("FILLED", f"dry-{coid}")]
        third.expect("placing", LINE_TIMEOUT_S)
        print(f"\nlock: refused in {refused_in:.2f} s, taken in {locked_in:.2f} s after SIGKILL")
        third.sigkill()
    finally:
        for worker in (first, second, third):
            if worker is not None:
                worker.stop()
