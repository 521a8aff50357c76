"""The draining process of the crash tests: ``python drain_worker.py DB [--pause-at-place]``.

Takes the instance lock, opens the engine with the dry-run broker and no chain (the database has
the token metadata, and every ClearV2's AfterClear is queued), runs ``start()`` and drains to
completion in passes that end every ``PASS_BLOCKS`` blocks. Stdout is a line protocol for the test:

- ``locked <lock file>``: the instance lock is held;
- ``started processed=<n>``: ``start()`` returned (in-flight executions resolved);
- ``placing <client_order_id>`` (``--pause-at-place`` only): the first broker call of the drain
  was reached, so its PENDING row is committed and its outcome is not booked yet; the worker then
  waits there until stdin closes (the test SIGKILLs it first);
- ``done processed=<n> events=<n> executions=<n>``: drained; exit 0.

Exit codes: 0 drained cleanly; 2 an event failed or work is left; 3 the lock is held elsewhere
(the message on stderr names the lock file); 4 stdin closed while paused.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from loguru import logger

from bot.broker.base import OrderRequest, OrderState
from bot.broker.dry_run import DryRunBroker
from bot.core.model import RawLog, TokenInfo
from bot.core.tokens import DEFAULT_RULES
from bot.devnet.synthetic import ORDERBOOK, OWNER
from bot.engine import DrainStats, Engine, EngineOptions, RetryPolicy
from bot.errors import FatalError, InstanceLockedError
from bot.store.connection import ServedChain
from bot.store.lock import InstanceLock

SERVED = ServedChain(31337, ORDERBOOK, OWNER, 0)
BATCH_SIZE = 25  # small transactions, so kills land at many different points
PASS_BLOCKS = 20  # drain passes end on a fixed grid of blocks, like heads arriving one by one


class NoChain:
    """The seed database holds everything: any chain call is a test failure (event fails)."""

    async def token_info(self, address: str) -> TokenInfo:
        raise FatalError(f"crash test: unexpected token_info({address})")

    async def receipt_logs(self, tx_hash: str) -> list[RawLog]:
        raise FatalError(f"crash test: unexpected receipt_logs({tx_hash})")


class PausingBroker(DryRunBroker):
    """The dry-run broker that, once armed, announces the first order and waits there."""

    def __init__(self, pause: bool) -> None:
        self._pause = pause
        self.armed = False

    async def place(self, order: OrderRequest) -> OrderState:
        if self.armed and self._pause:
            print(f"placing {order.client_order_id}", flush=True)
            # Wait for the SIGKILL here; if the test itself died, stdin closes and we leave.
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            print("stdin closed while paused", file=sys.stderr, flush=True)
            raise SystemExit(4)
        return await super().place(order)


async def _processed(engine: Engine) -> int:
    rows = await engine.connection.execute_fetchall(
        "SELECT COUNT(*) FROM events WHERE status = 'processed'"
    )
    return int(next(iter(rows))[0])


async def _pending_span(engine: Engine) -> tuple[int, int]:
    rows = await engine.connection.execute_fetchall(
        "SELECT COALESCE(MIN(block_number), 0) FROM events WHERE status = 'pending'"
    )
    first = int(next(iter(rows))[0])
    rows = await engine.connection.execute_fetchall("SELECT MAX(block_number) FROM events")
    return first, int(next(iter(rows))[0])


async def _left(engine: Engine) -> int:
    rows = await engine.connection.execute_fetchall(
        "SELECT (SELECT COUNT(*) FROM events WHERE status != 'processed')"
        " + (SELECT COUNT(*) FROM executions WHERE status IN ('PENDING', 'SUBMITTED'))"
    )
    return int(next(iter(rows))[0])


async def drain(db: Path, *, pause: bool) -> int:
    broker = PausingBroker(pause)
    options = EngineOptions(
        threshold_shares=1,
        batch_size=BATCH_SIZE,
        rpc_retry=RetryPolicy(max_tries=1, base_s=0.0, max_s=0.0),
    )
    engine = await Engine.open(
        db, SERVED, broker=broker, chain=NoChain(), rules=DEFAULT_RULES, options=options
    )
    try:
        await engine.start()
        print(f"started processed={await _processed(engine)}", flush=True)
        broker.armed = True
        stats = DrainStats()
        # Passes end on the same grid whatever was processed before a kill, so a run that is
        # killed and restarted decides the same hedges as one that is not (SPEC §4: hedges are
        # decided at the end of each pass).
        # A restart resumes with the pass its first pending event belongs to, as `run` resumes
        # from its checkpoint (an empty pass below it would decide on a half-booked pass).
        first, last_block = await _pending_span(engine)
        start = -(-first // PASS_BLOCKS) * PASS_BLOCKS
        for bound in range(start, last_block + PASS_BLOCKS, PASS_BLOCKS):
            passed = await engine.drain(up_to_block=bound)
            stats.events += passed.events
            stats.executions += passed.executions
            stats.failed += passed.failed
        left = await _left(engine)
        print(
            f"done processed={await _processed(engine)} events={stats.events}"
            f" executions={stats.executions}",
            flush=True,
        )
    finally:
        await engine.close()
    if stats.failed or left:
        print(f"failed={stats.failed} left={left}", file=sys.stderr, flush=True)
        return 2
    return 0


def main(argv: list[str]) -> int:
    db = Path(argv[0])
    pause = "--pause-at-place" in argv[1:]
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    try:
        lock = InstanceLock(db).acquire()
    except InstanceLockedError as exc:
        print(f"refusing to start: {exc}", file=sys.stderr, flush=True)
        return 3
    try:
        print(f"locked {lock.path}", flush=True)
        return asyncio.run(drain(db, pause=pause))
    finally:
        lock.release()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
