"""Simulated fills on a real chain against an oracle that decodes no event: token balances."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

from bot.core import amounts
from bot.devnet.deploy import Deployment, balance_of
from bot.devnet.plan import EQUITIES, count_fills, expected_net, make_plan, ticker_of
from bot.devnet.rpc import DevnetError, TransactionFailedError
from bot.devnet.simulate import BackgroundSimulation, run_plan, simulate_continuously
from tests.support.chain import Chain


def _equity_balances(chain: Chain, owner: str | None = None) -> dict[str, int]:
    d = chain.deployment
    account = owner or d.order_owner
    return {s: balance_of(chain.rpc, d.tokens[s].address, account) for s in EQUITIES}


def _net_from_balances(
    chain: Chain, before: dict[str, int], owner: str | None = None
) -> dict[str, Decimal]:
    """Per-ticker change of an owner's equity balances, scaled by each token's decimals."""
    after = _equity_balances(chain, owner)
    net: dict[str, Decimal] = {}
    for symbol in EQUITIES:
        ticker = ticker_of(symbol)
        assert ticker is not None
        raw = after[symbol] - before[symbol]
        scaled = amounts.from_base_units(abs(raw), chain.deployment.tokens[symbol].decimals)
        net[ticker] = scaled if raw >= 0 else -scaled
    return net


def _nonzero(net: dict[str, Decimal]) -> dict[str, Decimal]:
    return {t: v for t, v in net.items() if v != 0}


def test_seeded_plan_matches_on_chain_balance_changes_exactly(chain: Chain) -> None:
    plan = make_plan(seed=2024, fills=120)
    before = _equity_balances(chain)
    receipts = run_plan(chain.rpc, chain.deployment, plan)
    assert len(receipts) == len(plan)
    assert all(int(r["status"], 16) == 1 for r in receipts)
    expected = expected_net(plan)
    assert len(_nonzero(expected)) >= 3
    assert _nonzero(_net_from_balances(chain, before)) == _nonzero(expected)
    # Blocks only move forward and each receipt has the plan's fills as orderbook logs.
    book = chain.deployment.orderbook.lower()
    per_tx = [sum(1 for log in r["logs"] if log["address"].lower() == book) for r in receipts]
    assert per_tx == [len(tx.fills) * (2 if tx.is_clear else 1) for tx in plan]


def test_a_different_owner_view_of_the_same_plan_also_matches(chain: Chain) -> None:
    plan = make_plan(seed=9, fills=40)
    other = chain.deployment.other_owners[0]
    before = _equity_balances(chain, other)
    run_plan(chain.rpc, chain.deployment, plan)
    observed = _net_from_balances(chain, before, other)
    assert _nonzero(observed) == _nonzero(expected_net(plan, us="other1"))


def test_continuous_simulation_stops_after_max_fills(chain: Chain) -> None:
    before = _equity_balances(chain)
    stats = simulate_continuously(
        chain.http_url,
        chain.deployment,
        seed=3,
        rate=10_000,
        stop=threading.Event(),
        max_fills=25,
    )
    assert stats.fills == 25
    assert _nonzero(_net_from_balances(chain, before)) == _nonzero(stats.expected)
    assert stats.expected == expected_net(make_plan(3, 25))


def test_background_simulation_stops_promptly(chain: Chain) -> None:
    sim = BackgroundSimulation(chain.http_url, chain.deployment, seed=1, rate=0.2).start()
    started = time.monotonic()
    stats = sim.stop(timeout_s=5)
    assert not sim.is_alive()
    assert time.monotonic() - started < 5
    assert sim.error is None
    assert stats.transactions <= 1


def test_background_simulation_reports_a_reverted_transaction(chain: Chain) -> None:
    # A token is not an orderbook: the call reverts, and the thread reports it.
    not_a_book = chain.deployment.tokens["USDC"].address
    broken = Deployment.from_json({**chain.deployment.to_json(), "orderbook": not_a_book})
    sim = BackgroundSimulation(chain.http_url, broken, seed=1, rate=1000, max_fills=3).start()
    sim.join(timeout_s=10)
    assert not sim.is_alive()
    assert isinstance(sim.error, TransactionFailedError)
    assert sim.snapshot().fills == 0


def test_background_simulation_reports_an_unreachable_node(chain: Chain) -> None:
    url = chain.http_url
    chain.anvil.stop()
    sim = BackgroundSimulation(url, chain.deployment, seed=1, rate=1000, max_fills=3).start()
    sim.join(timeout_s=10)
    assert not sim.is_alive()
    assert isinstance(sim.error, DevnetError)
    assert "unreachable" in str(sim.error)


def test_deployment_json_round_trip(chain: Chain) -> None:
    d = chain.deployment
    assert Deployment.from_json(d.to_json()) == d
    assert d.chain_id == 31337
    assert d.order_owner not in (*d.other_owners, d.taker, d.clearer, d.deployer)
    assert {s: t.decimals for s, t in d.tokens.items()} == {
        "USDC": 6, "AAPLs1": 18, "TSLAs1": 18, "NVDA0x": 18, "wtMSFT": 18, "WETH": 18,
    }  # fmt: skip
    assert len(chain.rpc.call("eth_getCode", [d.orderbook, hex(d.deployment_block)])) > 2
    assert chain.rpc.call("eth_getCode", [d.orderbook, hex(d.deployment_block - 1)]) == "0x"


def test_plan_of_zero_fills_changes_nothing(chain: Chain) -> None:
    before = _equity_balances(chain)
    assert run_plan(chain.rpc, chain.deployment, make_plan(1, 0)) == []
    assert _equity_balances(chain) == before
    assert count_fills(make_plan(1, 0)) == 0
