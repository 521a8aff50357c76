"""Execute fill plans on a devnet: a fixed plan, or a continuous stream at a rate."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bot.devnet.contracts import checksum, orderbook_artifact
from bot.devnet.deploy import Deployment
from bot.devnet.plan import (
    ClearFill,
    OrderSpec,
    PlannedTx,
    SignedContext,
    TakeFill,
    add_expected,
    iter_transactions,
)
from bot.devnet.rpc import JsonRpcClient, TxSender

TX_BASE_GAS = 300_000
GAS_PER_FILL = 400_000


def _order_tuple(order: OrderSpec, deployment: Deployment) -> tuple[Any, ...]:
    def io(symbol: str) -> tuple[str, int, int]:
        token = deployment.tokens[symbol]
        return (token.address, token.decimals, order.vault_id)

    return (
        deployment.owner_address(order.owner),
        (
            checksum("0x" + order.interpreter.hex()),
            checksum("0x" + order.store.hex()),
            order.bytecode,
        ),
        [io(s) for s in order.inputs],
        [io(s) for s in order.outputs],
        order.nonce,
    )


def _context_tuple(ctx: SignedContext) -> tuple[Any, ...]:
    return (checksum("0x" + ctx.signer.hex()), list(ctx.context), ctx.signature)


def take_config(fill: TakeFill, deployment: Deployment) -> tuple[Any, ...]:
    """The ``TakeOrderConfigV3`` tuple of a planned take."""
    return (
        _order_tuple(fill.order, deployment),
        fill.order.input_index,
        fill.order.output_index,
        [_context_tuple(c) for c in fill.signed_context],
    )


def clear_args(fill: ClearFill, deployment: Deployment) -> tuple[Any, ...]:
    """``(alice, bob, ClearConfig, ClearStateChange)`` tuples of a planned clear."""
    config = (
        fill.alice.input_index,
        fill.alice.output_index,
        fill.bob.input_index,
        fill.bob.output_index,
        fill.alice_bounty_vault_id,
        fill.bob_bounty_vault_id,
    )
    change = (fill.alice_output, fill.bob_output, fill.alice_input, fill.bob_input)
    return (
        _order_tuple(fill.alice, deployment),
        _order_tuple(fill.bob, deployment),
        config,
        change,
    )


def encode_tx(tx: PlannedTx, deployment: Deployment) -> tuple[str, bytes]:
    """(sender account, calldata) of a planned transaction."""
    book = orderbook_artifact()
    clears = [f for f in tx.fills if isinstance(f, ClearFill)]
    takes = [f for f in tx.fills if isinstance(f, TakeFill)]
    if clears and len(clears) == 1:
        return deployment.clearer, book.encode_call("clear", *clear_args(clears[0], deployment))
    if clears:
        columns = list(zip(*(clear_args(f, deployment) for f in clears), strict=True))
        return deployment.clearer, book.encode_call("clearMany", *(list(c) for c in columns))
    if len(takes) == 1:
        fill = takes[0]
        data = book.encode_call(
            "takeOrder", take_config(fill, deployment), fill.order_input, fill.order_output
        )
        return deployment.taker, data
    return deployment.taker, book.encode_call(
        "takeOrders",
        [take_config(f, deployment) for f in takes],
        [f.order_input for f in takes],
        [f.order_output for f in takes],
    )


def send_planned(sender: TxSender, tx: PlannedTx, deployment: Deployment) -> str:
    """Send one planned transaction (no wait beyond ``TxSender``'s pool bound)."""
    account, data = encode_tx(tx, deployment)
    gas = TX_BASE_GAS + GAS_PER_FILL * len(tx.fills)
    return sender.send(account, deployment.orderbook, data, gas)


def run_plan(
    rpc: JsonRpcClient, deployment: Deployment, plan: Iterable[PlannedTx]
) -> list[dict[str, Any]]:
    """Execute every transaction of ``plan`` in order; returns their receipts (all successful)."""
    sender = TxSender(rpc, keep_receipts=True)
    for tx in plan:
        send_planned(sender, tx, deployment)
    sender.flush()
    return sender.receipts


@dataclass
class SimulationStats:
    """Progress of a continuous simulation (``expected`` is our per-ticker net so far)."""

    transactions: int = 0
    fills: int = 0
    expected: dict[str, Decimal] = field(default_factory=dict)


def simulate_continuously(
    rpc_url: str,
    deployment: Deployment,
    *,
    seed: int,
    rate: float,
    stop: threading.Event,
    duration_s: float | None = None,
    max_fills: int | None = None,
    stats: SimulationStats | None = None,
    lock: threading.Lock | None = None,
    on_tx: Callable[[PlannedTx, dict[str, Any]], None] | None = None,
) -> SimulationStats:
    """Send fills at ``rate`` fills per second until ``stop`` is set, ``duration_s`` passes or
    ``max_fills`` are sent; each transaction's receipt is awaited before the next is sent."""
    if rate <= 0:
        raise ValueError("rate must be > 0 fills per second")
    stats = stats if stats is not None else SimulationStats()
    lock = lock if lock is not None else threading.Lock()
    started = time.monotonic()
    deadline = None if duration_s is None else started + duration_s
    with JsonRpcClient(rpc_url) as rpc:
        sender = TxSender(rpc)
        for tx in iter_transactions(random.Random(seed), max_fills=max_fills):
            due = started + stats.fills / rate
            if deadline is not None:
                due = min(due, deadline)
            if stop.wait(max(0.0, due - time.monotonic())):
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            send_planned(sender, tx, deployment)
            receipt = sender.flush()[-1]
            with lock:
                stats.transactions += 1
                stats.fills += len(tx.fills)
                add_expected(stats.expected, tx)
            if on_tx is not None:
                on_tx(tx, receipt)
    return stats


class BackgroundSimulation:
    """``simulate_continuously`` in a daemon thread, for a demo running the bot alongside.

    ``start()``, then ``stop()`` (sets the event and joins); ``snapshot()`` reads progress safely;
    ``error`` holds an exception that ended the thread early.
    """

    def __init__(
        self,
        rpc_url: str,
        deployment: Deployment,
        *,
        seed: int = 1,
        rate: float = 2.0,
        duration_s: float | None = None,
        max_fills: int | None = None,
    ) -> None:
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._stats = SimulationStats()
        self._args = (rpc_url, deployment, seed, rate, duration_s, max_fills)
        self._thread = threading.Thread(target=self._run, name="devnet-simulation", daemon=True)

    def _run(self) -> None:
        rpc_url, deployment, seed, rate, duration_s, max_fills = self._args
        try:
            simulate_continuously(
                rpc_url,
                deployment,
                seed=seed,
                rate=rate,
                stop=self.stop_event,
                duration_s=duration_s,
                max_fills=max_fills,
                stats=self._stats,
                lock=self._lock,
            )
        except BaseException as exc:  # reported through .error, the thread must not die silently
            self.error = exc

    def start(self) -> BackgroundSimulation:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> SimulationStats:
        self.stop_event.set()
        self._thread.join(timeout_s)
        return self.snapshot()

    def join(self, timeout_s: float | None = None) -> None:
        self._thread.join(timeout_s)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def snapshot(self) -> SimulationStats:
        with self._lock:
            return SimulationStats(
                self._stats.transactions,
                self._stats.fills,
                dict(sorted(self._stats.expected.items())),
            )

    def __enter__(self) -> BackgroundSimulation:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
