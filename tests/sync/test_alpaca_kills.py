"""`bot run` hedging at (fake) Alpaca, SIGKILLed at random instants around order placement.

The fake Alpaca server runs in a thread of this process; it answers some placements with a 500
or a dropped connection *after* creating the order, some only after the client gave up (the
order lands later), and refuses some before creating anything. Live fills keep coming from the
devnet while the bot is killed, each time a random few milliseconds after an order reached the
fake (before its answer, between the answer and its commit, or after). Every random choice comes
from one logged seed. At the end, with the faults off, the bot runs until idle and:

- the fake holds exactly one order per execution of ours, and no client_order_id twice;
- every order at the fake with our prefix belongs to an execution (nothing placed behind its
  back), and none of the executions FAILED while its order exists;
- per ticker, the fake's signed filled quantity equals ``hedged_shares``; the on-chain net equals
  what the devnet sent.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from bot.core import amounts
from bot.devnet.fake_alpaca import FakeAlpaca
from bot.devnet.simulate import BackgroundSimulation
from bot.store import queries
from tests.support.botproc import BotProcess, wait_caught_up, wait_for, write_config
from tests.support.chain import Chain

SEED = 2026_12_01
KILLS = 10
KEY, SECRET = "fake-key-id", "fake-secret"
POST = "POST"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _posts(fake: FakeAlpaca) -> int:
    return sum(1 for method, path, _status in list(fake.requests) if method == POST)


def _config(tmp_path: Path, chain: Chain, base_url: str) -> Path:
    database = tmp_path / "bot.db"
    alpaca = (
        '\n[broker]\nkind = "alpaca"\nrejection_backoff_s = 0.2\n'
        f'\n[broker.alpaca]\nbase_url = "{base_url}"\napi_key_id = "{KEY}"\n'
        f'api_secret = "{SECRET}"\ntimeout_s = 0.5\npoll_interval_s = 0.2\n'
    )
    return write_config(
        tmp_path / "bot.toml",
        chain.deployment,
        ws_url=chain.ws_url,
        database=database,
        first_event_timeout_s=0.5,
        extra=alpaca,
    )


def test_sigkills_around_placement_leave_one_order_per_execution(
    chain: Chain, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    print(f"\nalpaca kill test seed {SEED}")
    fake = FakeAlpaca(key_id=KEY, secret=SECRET, fill_steps=2, step_s=0.05, seed=SEED)
    with fake.serve_in_thread() as base_url:
        fake.random_faults(
            "POST /v2/orders",
            {"500_after": 0.15, "drop_after": 0.1, "slow_after": 0.1, "500_before": 0.1},
        )
        config = _config(tmp_path, chain, base_url)
        database = tmp_path / "bot.db"
        simulation = BackgroundSimulation(
            chain.http_url, chain.deployment, seed=SEED % 1000, rate=8.0
        ).start()
        kills: list[tuple[int, float]] = []
        try:
            for number in range(KILLS):
                bot = BotProcess(config).start()
                before = _posts(fake)

                def placed(bot: BotProcess = bot, before: int = before) -> bool:
                    return _posts(fake) > before or not bot.running()

                try:
                    wait_for(
                        placed,
                        timeout_s=60,
                        what="an order placement reaching the fake",
                        on_timeout=bot.log_tail,
                    )
                    assert bot.running(), bot.log_tail()
                    delay = rng.uniform(0.0, 0.6)  # before, during or after its answer
                    time.sleep(delay)
                finally:
                    bot.kill()
                kills.append((number, round(delay, 3)))
        finally:
            stats = simulation.stop()
        assert simulation.error is None, simulation.error
        print(f"kills (number, seconds after a POST arrived): {kills}")

        fake.clear_faults()
        bot = BotProcess(config).start()
        try:
            bot.wait_for_log("live: following heads", timeout_s=60)
            head = int(chain.rpc.call("eth_blockNumber", []), 16)
            report = wait_caught_up(database, head, bot=bot, timeout_s=90)
        finally:
            assert bot.stop() == 0, bot.log_tail()

        executions = [
            e
            for e in queries.executions(database)
            if not e["client_order_id"].startswith("baseline-")
        ]
        ours = f"bot-{executions[0]['client_order_id'].split('-')[1]}-" if executions else "bot-"
        orders = [o for o in fake.orders() if o["client_order_id"].startswith(ours)]
        by_cid = Counter(o["client_order_id"] for o in orders)
        assert all(count == 1 for count in by_cid.values()), by_cid
        cids = {e["client_order_id"] for e in executions}
        assert set(by_cid) <= cids, "an order at the broker that no execution placed"
        for e in executions:
            placed = e["client_order_id"] in by_cid
            if e["status"] == "FAILED":
                assert not placed, e
            else:
                assert placed, e
        assert any(fake.post_attempts(cid) > 1 for cid in cids), "no placement was ever retried"
        assert report["idle"] is True
        for position in report["positions"]:
            ticker = position["ticker"]
            assert fake.signed_filled(ticker) == Decimal(position["hedged_shares"]), position
            assert abs(Decimal(position["unhedged_shares"])) < 1, position
        got = {p["ticker"]: Decimal(p["onchain_net_shares"]) for p in report["positions"]}
        expected = {k: v for k, v in stats.expected.items() if v}
        assert {k: v for k, v in got.items() if v} == expected
        total = amounts.total([abs(v) for v in expected.values()])
        print(
            f"{len(executions)} executions, {len(orders)} orders at the fake, "
            f"{sum(fake.post_attempts(c) for c in cids)} POST attempts, net {total} shares"
        )
