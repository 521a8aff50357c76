"""``bot doctor`` (SPEC §5, §10): the broker checks against the fake Alpaca server (bad keys, a
blocked account, no shorting, an asset that cannot be shorted, a broker nobody answers), the
secrets check (a readable file holding a secret fails with the chmod fix; no secret is ever
shown), and the checks off a devnet (block time, confirmations, providers on two chains) against
a loopback node that says it is chain 1.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.commands.doctor import doctor
from bot.devnet.fake_alpaca import FakeAlpaca
from bot.doctor import run_doctor
from tests.commands.doctor_kit import (
    ALL_DEVNET_CHECKS,
    ALPACA_CHECKS,
    TIMEOUT_S,
    alpaca_extra,
    by_name,
    database_for,
    doctor_config,
    failing,
    free_port,
    mainnet_config,
    mainnet_stub,
    served,
)
from tests.support.chain import Chain


@pytest.fixture
async def fake_alpaca() -> AsyncIterator[FakeAlpaca]:
    fake = FakeAlpaca()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


# ----------------------------------------------------------------------------- the broker


async def test_bad_broker_keys_fail_the_broker_check(
    chain: Chain, tmp_path: Path, fake_alpaca: FakeAlpaca, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = alpaca_extra(fake_alpaca.base_url, secret="not-the-fake-secret")
    config = doctor_config(tmp_path, chain.deployment, ws_url=chain.ws_url, extra=extra)
    code = await doctor(config, timeout_s=TIMEOUT_S)
    out = capsys.readouterr().out
    assert code == 1
    assert [line.split()[1:3] for line in out.splitlines() if line.startswith("FAIL")] == [
        ["broker", "keys"]
    ]
    assert "refused the API keys" in out
    assert "fix: check broker.alpaca.api_key_id and broker.alpaca.api_secret" in out
    for name in ALPACA_CHECKS[1:]:
        assert f"skip  {name}" in out
    assert "not-the-fake-secret" not in out and "fake-key-id" not in out
    assert ("GET", "/v2/account", 401) in fake_alpaca.requests


async def test_good_broker_keys_pass_every_broker_check(
    chain: Chain, tmp_path: Path, fake_alpaca: FakeAlpaca, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = alpaca_extra(fake_alpaca.base_url, secret="fake-secret")
    config = doctor_config(tmp_path, chain.deployment, ws_url=chain.ws_url, extra=extra)
    code = await doctor(config, as_json=True, timeout_s=TIMEOUT_S)
    answer = json.loads(capsys.readouterr().out)
    assert code == 0, answer
    names = [c["name"] for c in answer["checks"]]
    assert names == [*ALL_DEVNET_CHECKS[:6], *ALPACA_CHECKS, "disk", "secrets"]
    checks = {c["name"]: c for c in answer["checks"]}
    assert "accepted the keys (account fake-account-0001)" in checks["broker keys"]["detail"]
    assert "market open" in checks["broker clock"]["detail"]
    assert "fake-secret" not in json.dumps(answer)
    # the secret is in a mode-600 file: allowed, and said so
    assert "api_secret" in checks["secrets"]["detail"]


async def test_a_blocked_account_or_no_shorting_fails(
    chain: Chain, tmp_path: Path, fake_alpaca: FakeAlpaca
) -> None:
    extra = alpaca_extra(fake_alpaca.base_url, secret="fake-secret")
    config = doctor_config(tmp_path, chain.deployment, ws_url=chain.ws_url, extra=extra)
    fake_alpaca.set_account(trading_blocked=True, shorting_enabled=False)
    results = await run_doctor(config, timeout_s=TIMEOUT_S)
    assert failing(results) == ["broker account", "broker shorting"]
    assert "trading_blocked" in by_name(results)["broker account"].detail
    assert "enable shorting" in by_name(results)["broker shorting"].fix


async def test_a_traded_ticker_that_cannot_be_shorted_fails(
    chain: Chain, tmp_path: Path, fake_alpaca: FakeAlpaca
) -> None:
    database = tmp_path / "bot.db"
    await database_for(database, served(chain.deployment))
    with sqlite3.connect(database) as conn:
        conn.executemany(
            "INSERT INTO positions (ticker, onchain_net, hedged, in_flight, updated_at) "
            "VALUES (?, '1', '0', '0', 'now')",
            [("AAPL",), ("NVDA",), ("TSLA",)],
        )
    fake_alpaca.set_asset("NVDA", shortable=False)
    fake_alpaca.set_asset("TSLA", known=False)
    extra = alpaca_extra(fake_alpaca.base_url, secret="fake-secret")
    config = doctor_config(
        tmp_path, chain.deployment, ws_url=chain.ws_url, database=database, extra=extra
    )
    results = await run_doctor(config, timeout_s=TIMEOUT_S)
    assert failing(results) == ["broker shorting"]
    detail = by_name(results)["broker shorting"].detail
    assert "NVDA is not shortable" in detail
    assert "TSLA is not an asset the broker knows" in detail
    assert "AAPL" not in detail


async def test_a_broker_nobody_answers_fails_fast(chain: Chain, tmp_path: Path) -> None:
    extra = alpaca_extra(f"http://127.0.0.1:{free_port()}", secret="fake-secret")
    config = doctor_config(tmp_path, chain.deployment, ws_url=chain.ws_url, extra=extra)
    results = await run_doctor(config, timeout_s=TIMEOUT_S)
    assert failing(results) == ["broker keys"]
    assert "cannot ask" in by_name(results)["broker keys"].detail
    assert "broker.alpaca.base_url" in by_name(results)["broker keys"].fix


# ----------------------------------------------------------------------------- secrets and config


async def test_a_world_readable_secret_fails_with_the_chmod_fix(
    chain: Chain, tmp_path: Path, fake_alpaca: FakeAlpaca, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = alpaca_extra(fake_alpaca.base_url, secret="fake-secret")
    config = doctor_config(tmp_path, chain.deployment, ws_url=chain.ws_url, extra=extra, mode=0o644)
    code = await doctor(config, timeout_s=TIMEOUT_S)
    out = capsys.readouterr().out
    assert code == 1
    failed_lines = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert [line.split()[1] for line in failed_lines] == ["secrets"]
    assert "mode 0644" in failed_lines[0]
    assert "broker.alpaca.api_key_id, broker.alpaca.api_secret" in failed_lines[0]
    assert f"fix: chmod 600 {config}" in failed_lines[0]
    assert "BOT__BROKER__ALPACA__API_SECRET" in failed_lines[0]
    assert "fake-secret" not in out

    config.chmod(0o600)
    assert await doctor(config, timeout_s=TIMEOUT_S) == 0


async def test_secrets_by_environment_leave_a_readable_file_fine(
    chain: Chain, tmp_path: Path, fake_alpaca: FakeAlpaca, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = alpaca_extra(fake_alpaca.base_url, key_id="")
    config = doctor_config(tmp_path, chain.deployment, ws_url=chain.ws_url, extra=extra, mode=0o644)
    monkeypatch.setenv("BOT__BROKER__ALPACA__API_KEY_ID", "fake-key-id")
    monkeypatch.setenv("BOT__BROKER__ALPACA__API_SECRET", "fake-secret")
    results = await run_doctor(config, timeout_s=TIMEOUT_S)
    assert failing(results) == []
    assert "holds no secret" in by_name(results)["secrets"].detail


async def test_a_provider_url_with_a_key_is_a_secret(chain: Chain, tmp_path: Path) -> None:
    keyed = f"{chain.http_url}/v3/0123456789abcdef"
    config = doctor_config(tmp_path, chain.deployment, ws_url=chain.ws_url, mode=0o640)
    config.write_text(config.read_text().replace('http_url = ""', f'http_url = "{keyed}"'))
    results = await run_doctor(config, timeout_s=TIMEOUT_S)
    assert "secrets" in failing(results)  # (anvil answers 404 on that path: providers fails too)
    assert "chain.http_url" in by_name(results)["secrets"].detail
    assert all("0123456789abcdef" not in r.detail + r.fix for r in results)


async def test_a_key_quoted_by_an_error_message_is_never_shown(
    chain: Chain, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """aiohttp's error for a bad port quotes the whole URL, key included."""
    keyed = "http://127.0.0.1:99999/v3/0123456789abcdef"
    config = doctor_config(tmp_path, chain.deployment, ws_url=chain.ws_url, http_url=keyed)
    assert await doctor(config, as_json=True, timeout_s=TIMEOUT_S) == 1
    out = capsys.readouterr().out
    answer = json.loads(out)
    assert [c["name"] for c in answer["checks"] if not c["ok"]] == ["providers"]
    assert "0123456789abcdef" not in out
    assert "http://127.0.0.1:99999/<redacted>" in out


# ----------------------------------------------------------------------------- another chain


@pytest.fixture
async def chain1_node() -> AsyncIterator[dict[str, Any]]:
    async with mainnet_stub() as stub:
        yield stub


async def test_providers_on_different_chains_fail(
    chain: Chain, tmp_path: Path, chain1_node: dict[str, Any]
) -> None:
    config = doctor_config(
        tmp_path, chain.deployment, ws_url=chain.ws_url, http_url=chain1_node["http_url"]
    )
    results = await run_doctor(config, timeout_s=TIMEOUT_S)
    assert failing(results) == ["providers"]
    detail = by_name(results)["providers"].detail
    assert "answers chain 1" in detail and "answers chain 31337" in detail


@pytest.mark.parametrize(("offset_s", "ok"), [(0, True), (-120, False), (120, False)])
async def test_block_time_off_a_devnet(
    chain: Chain, tmp_path: Path, chain1_node: dict[str, Any], offset_s: int, ok: bool
) -> None:
    chain1_node["timestamp"] = int(time.time()) + offset_s
    config = mainnet_config(tmp_path, chain.deployment, chain1_node, confirmations=12)
    results = await run_doctor(config, timeout_s=TIMEOUT_S)
    assert failing(results) == ([] if ok else ["block time"])
    check = by_name(results)["block time"]
    assert not check.skipped
    assert ("behind" if offset_s > 0 else "ahead of") in check.detail
    if not ok:
        assert "timedatectl set-ntp true" in check.fix


async def test_off_a_devnet_confirmations_are_required(
    tmp_path: Path, chain: Chain, chain1_node: dict[str, Any]
) -> None:
    config = mainnet_config(tmp_path, chain.deployment, chain1_node, confirmations=None)
    results = await run_doctor(config, timeout_s=TIMEOUT_S)
    assert failing(results) == ["config"]
    check = by_name(results)["config"]
    assert "live.confirmations is not set and chain 1 is not a devnet" in check.detail
    assert "BOT__LIVE__CONFIRMATIONS" in check.fix
