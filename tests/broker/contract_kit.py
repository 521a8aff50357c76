"""The brokers the contract suite runs against, what each can show, and how to drive its far side.

Every broker the engine may use is listed in :data:`REGISTRY` with the *capabilities* it can
demonstrate. Each contract case names the one capability it needs and is parametrized over
exactly the brokers that declare it (:func:`brokers_with`), so no case is ever skipped: a broker
that cannot show a behaviour (the stateless dry-run broker cannot lose an answer) simply does
not run that case. To add a broker, add a :class:`BrokerKind` with a factory that yields a
:class:`BrokerUnderTest` and a :class:`Remote` for its far side, e.g. for the engine's test
double (``tests/engine/engine_kit.py``)::

    class FakeBrokerRemote(NoRemote):
        def __init__(self, broker: FakeBroker) -> None:
            self.broker = broker
        def orders_with(self, client_order_id: str) -> int:
            return self.broker.placed.count(client_order_id)

    REGISTRY["engine-fake"] = BrokerKind(frozenset({SAME_STATE_ON_DUPLICATE, FILLS,
        FILLS_AT_ONCE, REMEMBERS_ORDERS}), _engine_fake)

A case calls only the :class:`Remote` methods its capability needs (:class:`NoRemote` fails
loudly on any other).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import pytest

from bot.broker import DryRunBroker
from bot.broker.alpaca import AlpacaBroker
from bot.broker.base import Broker, OrderRequest, OrderState
from bot.core.model import Direction
from bot.devnet.fake_alpaca import FakeAlpaca
from tests.engine.engine_kit import FakeBroker

# Capabilities: each names one behaviour a contract case checks.
SAME_STATE_ON_DUPLICATE = "same_state_on_duplicate"  # place twice with one id: the same state
FILLS = "fills"  # an ordinary order ends filled in full
FILLS_AT_ONCE = "fills_at_once"  # place answers filled at the reference price
REMEMBERS_ORDERS = "remembers_orders"  # lookup by id; one order per id at the broker
LOST_ANSWER = "lost_answer"  # the far side can accept an order and lose the answer
ACCOUNT_REFUSAL = "account_refusal"  # the far side can refuse for the whole account
PARTIAL_FILL = "partial_fill"  # part fills, then the broker cancels the rest
REJECTS_AT_ONCE = "rejects_at_once"  # the placement itself is refused
REJECTS_LATER = "rejects_later"  # accepted, then rejected as a status
EXPIRES_AT_CLOSE = "expires_at_close"  # a day order still open at the close expires
REPLACES = "replaces"  # the broker replaces an order by another (follow replaced_by)

FOLLOW_DEADLINE_S = 20.0


class Remote(Protocol):
    """The broker's far side, made to do things. Only called for declared capabilities."""

    def list_stock(self, symbol: str, price: Decimal) -> None: ...
    def plan(self, symbol: str, plan: str) -> None:
        """``fill``, ``partial_then_cancel``, ``never_fill``, ``reject_now``, ``reject_later``,
        ``replace``: the life of the next orders of ``symbol``."""

    def lose_next_answer(self, how: str) -> None:
        """The next placement is accepted but its answer is lost: ``5xx``, ``drop``, ``timeout``."""

    def refuse_account(self) -> None:
        """From now on placements are refused for the account (insufficient buying power)."""

    def close_market(self) -> None: ...
    def orders_with(self, client_order_id: str) -> int:
        """How many orders the far side holds under this client id."""
        ...

    async def until_visible(self, client_order_id: str) -> None:
        """Wait until an accepted order whose answer was lost can be looked up."""


class NoRemote:
    """For brokers with no far side (dry-run): nothing to list, nothing to drive."""

    def list_stock(self, symbol: str, price: Decimal) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"{name}: this broker declares no capability that needs it")


@dataclass
class BrokerUnderTest:
    name: str
    broker: Broker
    capabilities: frozenset[str]
    remote: Remote | NoRemote
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def request(self, symbol: str, qty: str = "3", price: str = "100") -> OrderRequest:
        """A fresh order (a new client id) of a stock listed at the far side."""
        self.remote.list_stock(symbol, Decimal(price))
        cid = f"bot-contract-{next(self._ids)}"
        return OrderRequest(cid, symbol, Direction.BUY, Decimal(qty), Decimal(price))

    async def follow(self, state: OrderState) -> OrderState:
        """Poll until the order is terminal, following ``replaced_by`` (deadline-bounded)."""
        deadline = time.monotonic() + FOLLOW_DEADLINE_S
        while True:
            if state.replaced_by is not None:
                successor = await self.broker.get_order(state.replaced_by)
                assert successor is not None, f"replacement {state.replaced_by} is unknown"
                state = successor
                continue
            if state.terminal:
                return state
            assert time.monotonic() < deadline, f"{state.client_order_id} is still {state.status}"
            await asyncio.sleep(0.02)
            found = await self.broker.get_order(state.broker_order_id)
            assert found is not None, f"order {state.broker_order_id} vanished"
            state = found


@dataclass(frozen=True)
class BrokerKind:
    capabilities: frozenset[str]
    open: Callable[[], AbstractAsyncContextManager[BrokerUnderTest]]


# -- dry-run -------------------------------------------------------------------------------------


@asynccontextmanager
async def _dry_run() -> AsyncIterator[BrokerUnderTest]:
    broker = DryRunBroker()
    yield BrokerUnderTest("dry-run", broker, REGISTRY["dry-run"].capabilities, NoRemote())
    await broker.aclose()


# -- alpaca against the fake ---------------------------------------------------------------------

FAKE_KEY_ID = "contract-key-id"
FAKE_SECRET = "contract-secret-value"
ALPACA_TIMEOUT_S = 1.0  # the client gives up after 1 s; a "timeout" answer comes after 2.5 s


class FakeAlpacaRemote:
    def __init__(self, fake: FakeAlpaca) -> None:
        self.fake = fake
        self._listed: set[str] = set()

    def list_stock(self, symbol: str, price: Decimal) -> None:
        if symbol not in self._listed:
            self.fake.set_asset(symbol, tradable=True, fractionable=True, shortable=True)
            self._listed.add(symbol)
        self.fake.set_price(symbol, price)

    def plan(self, symbol: str, plan: str) -> None:
        self.fake.script(symbol, plan)

    def lose_next_answer(self, how: str) -> None:
        fault = {"5xx": "500_after", "drop": "drop_after", "timeout": "slow_after"}[how]
        self.fake.inject("POST /v2/orders", fault, count=1, delay_s=ALPACA_TIMEOUT_S * 2.5)

    def refuse_account(self) -> None:
        self.fake.set_account(buying_power=Decimal(0))

    def close_market(self) -> None:
        self.fake.close_market()

    def orders_with(self, client_order_id: str) -> int:
        return sum(1 for o in self.fake.orders() if o["client_order_id"] == client_order_id)

    async def until_visible(self, client_order_id: str) -> None:
        await wait_for(lambda: self.fake.order_by_client_id(client_order_id) is not None)


@asynccontextmanager
async def _alpaca() -> AsyncIterator[BrokerUnderTest]:
    fake = FakeAlpaca(key_id=FAKE_KEY_ID, secret=FAKE_SECRET, step_s=0.02, seed=0)
    base_url = await fake.start()
    fake.open_market()
    broker = AlpacaBroker(
        base_url=base_url, key_id=FAKE_KEY_ID, secret=FAKE_SECRET, timeout_s=ALPACA_TIMEOUT_S
    )
    try:
        yield BrokerUnderTest(
            "alpaca", broker, REGISTRY["alpaca"].capabilities, FakeAlpacaRemote(fake)
        )
    finally:
        await broker.aclose()
        await fake.stop()


# -- the engine's test double ------------------------------------------------------------------


class FakeBrokerRemote:
    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker

    def list_stock(self, symbol: str, price: Decimal) -> None:
        return None

    def orders_with(self, client_order_id: str) -> int:
        return self.broker.placed.count(client_order_id)

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"{name}: the engine's test double declares no such capability")


@asynccontextmanager
async def _engine_fake() -> AsyncIterator[BrokerUnderTest]:
    broker = FakeBroker()
    yield BrokerUnderTest(
        "engine-fake", broker, REGISTRY["engine-fake"].capabilities, FakeBrokerRemote(broker)
    )
    await broker.aclose()


REGISTRY: dict[str, BrokerKind] = {
    "engine-fake": BrokerKind(
        frozenset({SAME_STATE_ON_DUPLICATE, FILLS, FILLS_AT_ONCE, REMEMBERS_ORDERS}), _engine_fake
    ),
    "dry-run": BrokerKind(frozenset({SAME_STATE_ON_DUPLICATE, FILLS, FILLS_AT_ONCE}), _dry_run),
    "alpaca": BrokerKind(
        frozenset(
            {
                SAME_STATE_ON_DUPLICATE,
                FILLS,
                REMEMBERS_ORDERS,
                LOST_ANSWER,
                ACCOUNT_REFUSAL,
                PARTIAL_FILL,
                REJECTS_AT_ONCE,
                REJECTS_LATER,
                EXPIRES_AT_CLOSE,
                REPLACES,
            }
        ),
        _alpaca,
    ),
}


def brokers_with(*capabilities: str) -> list[Any]:
    """``pytest.param`` per broker declaring all ``capabilities`` (``indirect`` parametrization)."""
    needed = frozenset(capabilities)
    names = [name for name, kind in REGISTRY.items() if needed <= kind.capabilities]
    assert names, f"no broker declares {sorted(needed)}: the case would never run"
    return [pytest.param(name, id=name) for name in names]


async def wait_for(
    condition: Callable[[], bool | Awaitable[bool]], deadline_s: float = FOLLOW_DEADLINE_S
) -> None:
    """Wait until ``condition()`` holds, polling, or fail at the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        outcome = condition()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        assert time.monotonic() < end, "condition not met before the deadline"
        await asyncio.sleep(0.02)
