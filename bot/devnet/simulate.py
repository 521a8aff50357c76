"""Execute fill plans on a devnet through web3.py contract calls: a fixed plan, or a continuous
stream at a rate (each transaction's receipt awaited before the next)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from web3.contract import Contract
from web3.contract.contract import ContractFunction

from bot.devnet.contracts import (
    Node,
    TxSender,
    checksum,
    connect,
    orderbook_artifact,
    web3_for,
    wire_form,
)
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

TX_BASE_GAS = 300_000
GAS_PER_FILL = 400_000


@dataclass(frozen=True)
class PlannedCall:
    """A web3 contract call ready to ``transact`` and the devnet account that sends it."""

    sender: str
    call: ContractFunction


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


def planned_call(book: Contract, tx: PlannedTx, deployment: Deployment) -> PlannedCall:
    """The orderbook call of a planned transaction (``takeOrder(s)``, ``clear``, ``clearMany``)
    on the web3 contract object ``book``, and the account that must send it."""
    clears = [f for f in tx.fills if isinstance(f, ClearFill)]
    takes = [f for f in tx.fills if isinstance(f, TakeFill)]
    if len(clears) == 1:
        return PlannedCall(
            deployment.clearer, book.functions.clear(*clear_args(clears[0], deployment))
        )
    if clears:
        columns = list(zip(*(clear_args(f, deployment) for f in clears), strict=True))
        return PlannedCall(
            deployment.clearer, book.functions.clearMany(*(list(c) for c in columns))
        )
    if len(takes) == 1:
        fill = takes[0]
        call = book.functions.takeOrder(
            take_config(fill, deployment), fill.order_input, fill.order_output
        )
        return PlannedCall(deployment.taker, call)
    call = book.functions.takeOrders(
        [take_config(f, deployment) for f in takes],
        [f.order_input for f in takes],
        [f.order_output for f in takes],
    )
    return PlannedCall(deployment.taker, call)


def gas_limit(tx: PlannedTx) -> int:
    """A fixed, generous gas limit: no ``eth_estimateGas`` round trip per transaction."""
    return TX_BASE_GAS + GAS_PER_FILL * len(tx.fills)


def send_planned(sender: TxSender, tx: PlannedTx, deployment: Deployment) -> str:
    """Send one planned transaction (no wait beyond ``TxSender``'s pool bound); its hash."""
    book = sender.contract(orderbook_artifact(), deployment.orderbook)
    planned = planned_call(book, tx, deployment)
    return sender.send(planned.call, planned.sender, gas_limit(tx)).to_0x_hex()


def run_plan(node: Node, deployment: Deployment, plan: Iterable[PlannedTx]) -> list[dict[str, Any]]:
    """Execute every transaction of ``plan`` in order; returns their receipts (all successful)
    in JSON-RPC form (hex strings, see ``wire_form``), as the bot's own client sees them."""
    with web3_for(node) as w3:
        sender = TxSender(w3, keep_receipts=True)
        for tx in plan:
            send_planned(sender, tx, deployment)
        sender.flush()
        return [wire_form(r) for r in sender.receipts]


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
    ``max_fills`` are sent; each transaction's receipt is awaited before the next is sent (and
    given to ``on_tx`` in JSON-RPC form). Prices follow one walk over the whole stream."""
    if rate <= 0:
        raise ValueError("rate must be > 0 fills per second")
    stats = stats if stats is not None else SimulationStats()
    lock = lock if lock is not None else threading.Lock()
    started = time.monotonic()
    deadline = None if duration_s is None else started + duration_s
    with connect(rpc_url) as w3:
        sender = TxSender(w3)
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
                on_tx(tx, wire_form(receipt))
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
