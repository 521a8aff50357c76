"""Engine test kit: our fills as ABI-exact logs, a chain reader, broker doubles, dumps.

The broker doubles stand for the network (the only thing the engine talks to besides SQLite).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from bot.broker.alpaca import AlpacaBroker
from bot.broker.base import (
    AccountState,
    AssetInfo,
    BrokerPosition,
    MarketClock,
    OrderRequest,
    OrderState,
    OrderStatus,
)
from bot.core import amounts
from bot.core.model import Direction, RawLog, TokenInfo
from bot.devnet.fake_alpaca import FakeAlpaca
from bot.devnet.synthetic import (
    AAPL,
    NVDA,
    ORDERBOOK,
    OWNER,
    SYNTHETIC_TOKENS,
    USDC,
    At,
    address_of,
    make_io,
    make_order,
    take_order_log,
)
from bot.engine import Engine, EngineOptions, RetryPolicy
from bot.engine.desk import DeskOptions
from bot.errors import BrokerRejected, OutcomeUnknown
from bot.store import queue
from bot.store.connection import ServedChain

SERVED = ServedChain(31337, ORDERBOOK, OWNER, 0)
TOKENS = {"AAPL": AAPL, "NVDA": NVDA}
OTHER_OWNER = address_of("someone-else")


@dataclass(frozen=True)
class AtAlpaca:
    """The fake Alpaca server's far side and the real client talking to it."""

    KEY: ClassVar[str] = "fake-key-id"
    SECRET: ClassVar[str] = "fake-secret"
    fake: FakeAlpaca
    broker: AlpacaBroker


class SimulatedCrash(Exception):
    """Stands for the process dying at this point."""


class FakeChain:
    """ChainReader over the synthetic token table; receipts and faults are set per test."""

    def __init__(self) -> None:
        self.tokens: dict[str, TokenInfo] = dict(SYNTHETIC_TOKENS)
        self.receipts: dict[str, list[RawLog]] = {}
        self.token_calls: list[str] = []
        self.faults: list[Exception] = []  # raised, in order, by the next calls

    def _fault(self) -> None:
        if self.faults:
            raise self.faults.pop(0)

    async def token_info(self, address: str) -> TokenInfo:
        self.token_calls.append(address)
        self._fault()
        return self.tokens[address]

    async def receipt_logs(self, tx_hash: str) -> list[RawLog]:
        self._fault()
        return list(self.receipts.get(tx_hash, []))


@dataclass
class FakeBroker:
    """A broker that remembers orders by client_order_id (like a real one) and can misbehave.

    ``script`` holds, per call to ``place``, one of: "fill", "reject", "unknown-lost" (timeout,
    the order never arrived), "unknown-placed" (timeout, but it was placed), "crash-before",
    "crash-after" (the process dies before / after the order reached the broker). When the
    script is empty every order fills.
    """

    script: list[str] = field(default_factory=list)
    orders: dict[str, OrderState] = field(default_factory=dict)
    placed: list[str] = field(default_factory=list)  # client_order_ids that reached the broker
    calls: list[str] = field(default_factory=list)

    def _fill(self, order: OrderRequest) -> OrderState:
        state = OrderState(
            broker_order_id=f"fake-{order.client_order_id}",
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            qty=order.qty,
            status=OrderStatus.FILLED,
            filled_qty=order.qty,
            filled_avg_price=order.reference_price,
        )
        self.orders[order.client_order_id] = state
        self.placed.append(order.client_order_id)
        return state

    async def place(self, order: OrderRequest) -> OrderState:
        self.calls.append(f"place {order.client_order_id}")
        if order.client_order_id in self.orders:
            return self.orders[order.client_order_id]
        step = self.script.pop(0) if self.script else "fill"
        if step == "fill":
            return self._fill(order)
        if step == "reject":
            raise BrokerRejected("insufficient buying power")
        if step == "unknown-lost":
            raise OutcomeUnknown("timeout")
        if step == "unknown-placed":
            self._fill(order)
            raise OutcomeUnknown("timeout")
        if step == "crash-before":
            raise SimulatedCrash("died before sending")
        if step == "crash-after":
            self._fill(order)
            raise SimulatedCrash("died after sending")
        raise AssertionError(step)

    async def lookup(self, client_order_id: str) -> OrderState | None:
        self.calls.append(f"lookup {client_order_id}")
        return self.orders.get(client_order_id)

    # the rest of the broker seam: a broker that is always open and holds no positions
    kind = "fake"
    host = "fake"
    keeps_positions = False

    async def get_order(self, broker_order_id: str) -> OrderState | None:
        return next((o for o in self.orders.values() if o.broker_order_id == broker_order_id), None)

    async def orders_since(self, after: datetime) -> list[OrderState]:
        return list(self.orders.values())

    async def cancel(self, broker_order_id: str) -> None:
        return None

    async def clock(self) -> MarketClock:
        return MarketClock(datetime.now(UTC), is_open=True, next_open=None, next_close=None)

    async def account(self) -> AccountState:
        return AccountState("fake", "ACTIVE", False, False, True, Decimal(10**9))

    async def positions(self) -> list[BrokerPosition]:
        return []

    async def asset(self, symbol: str) -> AssetInfo | None:
        return AssetInfo(symbol, tradable=True, fractionable=False, shortable=True)

    async def aclose(self) -> None:
        return None


class Fills:
    """Our fills (and others') as TakeOrderV2 logs, one per block, in order."""

    def __init__(self) -> None:
        self.block = 0

    def take(
        self,
        direction: Direction,
        shares: str,
        price: str,
        *,
        ticker: str = "AAPL",
        owner: str = OWNER,
    ) -> RawLog:
        """Our order ``direction``s ``shares`` of ``ticker`` at ``price`` USDC each."""
        self.block += 1
        equity = TOKENS[ticker]
        shares_raw = int(Decimal(shares).scaleb(18))
        usdc_raw = int((Decimal(shares) * Decimal(price)).scaleb(6))
        if direction is Direction.SELL:  # it gives equity, receives USDC
            order = make_order(owner, [make_io(USDC)], [make_io(equity)])
            order_in, order_out = usdc_raw, shares_raw
        else:
            order = make_order(owner, [make_io(equity)], [make_io(USDC)])
            order_in, order_out = shares_raw, usdc_raw
        return take_order_log(
            order,
            input=order_out,  # the taker received the order's output
            output=order_in,
            at=At(block_number=self.block),
        )

    def sell(self, shares: str, price: str, **kw: Any) -> RawLog:
        return self.take(Direction.SELL, shares, price, **kw)

    def buy(self, shares: str, price: str, **kw: Any) -> RawLog:
        return self.take(Direction.BUY, shares, price, **kw)


def fast_options(**overrides: Any) -> EngineOptions:
    """Engine options without waits; keys of :class:`DeskOptions` go to the desk."""
    desk: dict[str, Any] = {"resolve_base_s": 0.0, "resolve_max_s": 0.0, "rejection_backoff_s": 0.0}
    desk_keys = set(DeskOptions.__dataclass_fields__)
    desk.update({k: v for k, v in overrides.items() if k in desk_keys})
    base: dict[str, Any] = {
        "rpc_retry": RetryPolicy(max_tries=3, base_s=0.0, max_s=0.0),
        "desk": DeskOptions(**desk),
    }
    base.update({k: v for k, v in overrides.items() if k not in desk_keys})
    return EngineOptions(**base)


def rows(db_path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db_path) as conn:
        return list(conn.execute(sql))


def dump(db_path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table that records money, without timestamps."""
    return {
        "trades": rows(
            db_path,
            "SELECT id, tx_hash, log_index, side, inclusion, kind, ticker, shares, direction,"
            " price_usdc, usdc_amount FROM trades ORDER BY id",
        ),
        "lots": rows(db_path, "SELECT * FROM lots ORDER BY trade_id"),
        "positions": rows(
            db_path,
            "SELECT ticker, onchain_net, hedged, in_flight, consecutive_rejections, parked"
            " FROM positions ORDER BY ticker",
        ),
        "executions": rows(
            db_path,
            "SELECT id, ticker, direction, shares, client_order_id, status, broker_order_id,"
            " filled_shares, avg_price, reason FROM executions ORDER BY id",
        ),
        "links": rows(db_path, "SELECT * FROM execution_lots ORDER BY execution_id, seq"),
        "events": rows(
            db_path, "SELECT id, status, is_ours, reason, attempts FROM events ORDER BY id"
        ),
        "skipped": rows(db_path, "SELECT tx_hash, log_index, side, reason FROM skipped_fills"),
    }


def dec(text: str) -> Decimal:
    return amounts.from_text(text)


OpenEngine = Callable[..., Awaitable[Engine]]
Enqueue = Callable[[Iterable[RawLog]], Awaitable[queue.EnqueueResult]]
