"""``bot doctor [--json]`` (SPEC §10) against a real anvil, a real fake Alpaca server and real
SQLite files: a healthy devnet passes every line (the block-time check skipped on 31337), and
each fault (node down or silent, wrong orderbook, another chain's database, an unwritable
folder, bad broker keys, a blocked or short-less account, a readable secret, a wrong clock)
fails the check that names it, with its fix, and a non-zero exit. The doctor never writes the
database and never prints a secret.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web

from bot.commands.doctor import doctor
from bot.devnet.deploy import Deployment
from bot.devnet.fake_alpaca import FakeAlpaca
from bot.doctor import CheckResult, run_doctor
from bot.doctor.chain_checks import clock_skew_check, provider_sources
from bot.doctor.local_checks import traded_tickers
from bot.store.connection import ServedChain, open_database
from tests.support.botproc import write_config
from tests.support.chain import Chain

TIMEOUT_S = 5.0
NO_CODE_ADDRESS = "0x000000000000000000000000000000000000dEaD"
ALL_DEVNET_CHECKS = [
    "config",
    "providers",
    "subscription",
    "orderbook",
    "block time",
    "database",
    "broker",
    "disk",
    "secrets",
]
ALPACA_CHECKS = ["broker keys", "broker account", "broker clock", "broker shorting"]


# ----------------------------------------------------------------------------- helpers


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(
    tmp_path: Path,
    deployment: Deployment,
    *,
    ws_url: str,
    http_url: str = "",
    database: Path | None = None,
    extra: str = "",
    mode: int = 0o600,
    confirmations: int | None = 0,
) -> Path:
    path = write_config(
        tmp_path / "config.toml",
        deployment,
        ws_url=ws_url,
        http_url=http_url,
        database=database or tmp_path / "bot.db",
        extra=extra,
        confirmations=confirmations,
    )
    path.chmod(mode)
    return path


def _alpaca_extra(base_url: str, *, key_id: str = "fake-key-id", secret: str = "") -> str:
    secret_line = f'api_secret = "{secret}"' if secret else ""
    return f"""
[broker]
kind = "alpaca"

[broker.alpaca]
base_url = "{base_url}"
api_key_id = "{key_id}"
{secret_line}
"""


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def failing(results: list[CheckResult]) -> list[str]:
    return [r.name for r in results if not r.ok]


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config), "doctor", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def _database_for(path: Path, served: ServedChain) -> None:
    conn, _meta = await open_database(path, served)
    await conn.close()


def _served(deployment: Deployment, **changes: Any) -> ServedChain:
    served = ServedChain(
        31337, deployment.orderbook, deployment.order_owner, deployment.deployment_block
    )
    return dataclasses.replace(served, **changes)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _snapshot(database: Path) -> tuple[str, list[str]]:
    """The database's bytes and the names in its folder."""
    return _digest(database), sorted(p.name for p in database.parent.iterdir())


@pytest.fixture
async def fake_alpaca() -> AsyncIterator[FakeAlpaca]:
    fake = FakeAlpaca()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
def unwritable_database(tmp_path: Path) -> Iterator[Path]:
    """A database path whose folder cannot be written. ``chmod 500`` stops a normal user, not
    root (the tests run as root here), so root gets a path under a regular file instead, which
    no one can create."""
    if os.geteuid() != 0:
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o500)
        yield folder / "bot.db"
        folder.chmod(0o700)  # let pytest clean up
        return
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder\n")
    yield blocker / "bot.db"


# ----------------------------------------------------------------------------- as a user runs it


def test_healthy_devnet_passes_every_check(chain: Chain, tmp_path: Path) -> None:
    config = _config(tmp_path, chain.deployment, ws_url=chain.ws_url, http_url=chain.http_url)
    done = _cli(config)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [
        "skip" if "block time" in line else "ok" for line in lines
    ]
    assert len(lines) == len(ALL_DEVNET_CHECKS)
    assert "new database will be created" in done.stdout
    assert "dry-run (no orders leave this machine)" in done.stdout
    assert not (tmp_path / "bot.db").exists()  # the doctor creates nothing

    as_json = _cli(config, "--json")
    assert as_json.returncode == 0, as_json.stderr
    answer = json.loads(as_json.stdout)
    assert answer["ok"] is True
    assert [c["name"] for c in answer["checks"]] == ALL_DEVNET_CHECKS
    for check in answer["checks"]:
        assert set(check) == {"name", "ok", "skipped", "detail", "fix"}
        assert check["ok"] is True
        assert check["skipped"] is (check["name"] == "block time")


def test_node_down_fails_the_provider_check(chain: Chain, tmp_path: Path) -> None:
    dead = free_port()
    config = _config(tmp_path, chain.deployment, ws_url=f"ws://127.0.0.1:{dead}")
    started = time.monotonic()
    done = _cli(config)
    assert done.returncode == 1, done.stdout + done.stderr
    assert time.monotonic() - started < 30  # a refused connection fails at once, no retry loop
    failed_lines = [line for line in done.stdout.splitlines() if line.startswith("FAIL")]
    assert [line.split()[1] for line in failed_lines] == ["providers", "subscription"]
    assert f"chain.ws_url (ws://127.0.0.1:{dead}) does not answer" in failed_lines[0]
    assert "fix: start the node, or correct chain.ws_url" in failed_lines[0]
    # what needs a provider is not blamed: it says why it was not checked
    assert "skip  orderbook" in done.stdout

    answer = json.loads(_cli(config, "--json").stdout)
    assert answer["ok"] is False
    assert [c["name"] for c in answer["checks"] if not c["ok"]] == ["providers", "subscription"]


async def test_a_fallback_down_names_its_key(chain: Chain, tmp_path: Path) -> None:
    dead = free_port()
    config = _config(
        tmp_path, chain.deployment, ws_url=chain.ws_url, http_url=f"http://127.0.0.1:{dead}"
    )
    results = await run_doctor(config, timeout_s=TIMEOUT_S)
    assert failing(results) == ["providers"]
    assert "chain.http_url" in by_name(results)["providers"].detail
    assert "chain.ws_url" not in by_name(results)["providers"].fix
    # the calls go on with the provider that answered
    assert by_name(results)["orderbook"].ok and not by_name(results)["orderbook"].skipped


async def test_a_silent_node_fails_within_the_deadline(chain: Chain, tmp_path: Path) -> None:
    """A node that accepts connections and never answers: failing lines, not a hang."""
    writers: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.read()  # until the client gives up

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = _config(tmp_path, chain.deployment, ws_url=f"ws://127.0.0.1:{port}")
    try:
        started = time.monotonic()
        results = await run_doctor(config, timeout_s=0.5)
        elapsed = time.monotonic() - started
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()
    assert failing(results) == ["providers", "subscription"]
    assert "no answer within 0.5 s" in by_name(results)["providers"].detail
    assert elapsed < 5, f"the doctor took {elapsed:.1f} s against a silent node"


def test_wrong_orderbook_address_fails_the_orderbook_check(chain: Chain, tmp_path: Path) -> None:
    wrong = dataclasses.replace(chain.deployment, orderbook=NO_CODE_ADDRESS)
    config = _config(tmp_path, wrong, ws_url=chain.ws_url)
    done = _cli(config)
    assert done.returncode == 1, done.stdout + done.stderr
    failed_lines = [line for line in done.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed_lines) == 1
    assert failed_lines[0].split()[1] == "orderbook"
    assert f"no contract code at orderbook.address {NO_CODE_ADDRESS}" in failed_lines[0]
    assert "fix: correct orderbook.address" in failed_lines[0]


async def test_deployment_block_above_the_head_fails(chain: Chain, tmp_path: Path) -> None:
    future = dataclasses.replace(chain.deployment, deployment_block=10**9)
    results = await run_doctor(_config(tmp_path, future, ws_url=chain.ws_url))
    assert "orderbook" in failing(results)
    assert "deployment_block 1000000000 is above the head" in by_name(results)["orderbook"].detail


# ----------------------------------------------------------------------------- the database


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"chain_id": 1}, "chain_id=1"),
        ({"orderbook": NO_CODE_ADDRESS}, f"orderbook={NO_CODE_ADDRESS}"),
        ({"deployment_block": 123_456}, "deployment_block=123456"),
    ],
)
async def test_another_chains_database_fails_the_database_check(
    chain: Chain, tmp_path: Path, changes: dict[str, Any], named: str
) -> None:
    database = tmp_path / "bot.db"
    await _database_for(database, _served(chain.deployment, **changes))
    before = _digest(database)
    config = _config(tmp_path, chain.deployment, ws_url=chain.ws_url, database=database)
    results = await run_doctor(config, timeout_s=TIMEOUT_S)
    assert failing(results) == ["database"]
    check = by_name(results)["database"]
    assert f"serves {named}" in check.detail
    assert "point database.path at this chain's database" in check.fix
    assert _digest(database) == before


async def test_this_chains_database_passes_and_is_not_written(chain: Chain, tmp_path: Path) -> None:
    database = tmp_path / "bot.db"
    await _database_for(database, _served(chain.deployment))
    config = _config(tmp_path, chain.deployment, ws_url=chain.ws_url, database=database)
    before = _snapshot(database)
    results = await run_doctor(config, timeout_s=TIMEOUT_S)
    assert failing(results) == []
    check = by_name(results)["database"]
    assert "serves chain 31337" in check.detail and "writable" in check.detail
    # nothing written, no probe file left behind
    assert _snapshot(database) == before


async def test_a_database_in_use_is_read_through_its_wal(chain: Chain, tmp_path: Path) -> None:
    """While ``run`` holds the database open (its WAL and shared memory exist), the doctor
    reads it like any reader and still writes nothing."""
    database = tmp_path / "bot.db"
    conn, _meta = await open_database(database, _served(chain.deployment))
    try:
        await conn.execute(
            "INSERT INTO positions (ticker, onchain_net, hedged, in_flight, updated_at) "
            "VALUES ('AAPL', '1', '0', '0', 'now')"
        )  # committed into the WAL, not yet into the file
        config = _config(tmp_path, chain.deployment, ws_url=chain.ws_url, database=database)
        assert traded_tickers(database) == ["AAPL"]
        results = await run_doctor(config, timeout_s=TIMEOUT_S)
        assert failing(results) == []
        assert "serves chain 31337" in by_name(results)["database"].detail
    finally:
        await conn.close()


async def test_a_database_of_a_newer_version_fails(chain: Chain, tmp_path: Path) -> None:
    database = tmp_path / "bot.db"
    await _database_for(database, _served(chain.deployment))
    with sqlite3.connect(database) as conn:
        conn.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'x', 'now')"
        )
    config = _config(tmp_path, chain.deployment, ws_url=chain.ws_url, database=database)
    check = by_name(await run_doctor(config, timeout_s=TIMEOUT_S))["database"]
    assert not check.ok
    assert "newer version" in check.detail and "upgrade the bot" in check.fix


async def test_not_a_database_fails(chain: Chain, tmp_path: Path) -> None:
    database = tmp_path / "bot.db"
    database.write_bytes(b"this is not SQLite" * 100)
    config = _config(tmp_path, chain.deployment, ws_url=chain.ws_url, database=database)
    check = by_name(await run_doctor(config, timeout_s=TIMEOUT_S))["database"]
    assert not check.ok
    assert "cannot be read as a SQLite database" in check.detail


def test_unwritable_directory_fails_the_database_check(
    chain: Chain, tmp_path: Path, unwritable_database: Path
) -> None:
    config = _config(tmp_path, chain.deployment, ws_url=chain.ws_url, database=unwritable_database)
    done = _cli(config)
    assert done.returncode == 1, done.stdout + done.stderr
    failed_lines = [line for line in done.stdout.splitlines() if line.startswith("FAIL")]
    assert [line.split()[1] for line in failed_lines] == ["database"]
    assert "is not writable" in failed_lines[0]
    assert f"fix: create {unwritable_database.parent}" in failed_lines[0]


# ----------------------------------------------------------------------------- the broker


async def test_bad_broker_keys_fail_the_broker_check(
    chain: Chain, tmp_path: Path, fake_alpaca: FakeAlpaca, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = _alpaca_extra(fake_alpaca.base_url, secret="not-the-fake-secret")
    config = _config(tmp_path, chain.deployment, ws_url=chain.ws_url, extra=extra)
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
    extra = _alpaca_extra(fake_alpaca.base_url, secret="fake-secret")
    config = _config(tmp_path, chain.deployment, ws_url=chain.ws_url, extra=extra)
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
    extra = _alpaca_extra(fake_alpaca.base_url, secret="fake-secret")
    config = _config(tmp_path, chain.deployment, ws_url=chain.ws_url, extra=extra)
    fake_alpaca.set_account(trading_blocked=True, shorting_enabled=False)
    results = await run_doctor(config, timeout_s=TIMEOUT_S)
    assert failing(results) == ["broker account", "broker shorting"]
    assert "trading_blocked" in by_name(results)["broker account"].detail
    assert "enable shorting" in by_name(results)["broker shorting"].fix


async def test_a_traded_ticker_that_cannot_be_shorted_fails(
    chain: Chain, tmp_path: Path, fake_alpaca: FakeAlpaca
) -> None:
    database = tmp_path / "bot.db"
    await _database_for(database, _served(chain.deployment))
    with sqlite3.connect(database) as conn:
        conn.executemany(
            "INSERT INTO positions (ticker, onchain_net, hedged, in_flight, updated_at) "
            "VALUES (?, '1', '0', '0', 'now')",
            [("AAPL",), ("NVDA",), ("TSLA",)],
        )
    fake_alpaca.set_asset("NVDA", shortable=False)
    fake_alpaca.set_asset("TSLA", known=False)
    extra = _alpaca_extra(fake_alpaca.base_url, secret="fake-secret")
    config = _config(
        tmp_path, chain.deployment, ws_url=chain.ws_url, database=database, extra=extra
    )
    results = await run_doctor(config, timeout_s=TIMEOUT_S)
    assert failing(results) == ["broker shorting"]
    detail = by_name(results)["broker shorting"].detail
    assert "NVDA is not shortable" in detail
    assert "TSLA is not an asset the broker knows" in detail
    assert "AAPL" not in detail


async def test_a_broker_nobody_answers_fails_fast(chain: Chain, tmp_path: Path) -> None:
    extra = _alpaca_extra(f"http://127.0.0.1:{free_port()}", secret="fake-secret")
    config = _config(tmp_path, chain.deployment, ws_url=chain.ws_url, extra=extra)
    results = await run_doctor(config, timeout_s=TIMEOUT_S)
    assert failing(results) == ["broker keys"]
    assert "cannot ask" in by_name(results)["broker keys"].detail
    assert "broker.alpaca.base_url" in by_name(results)["broker keys"].fix


# ----------------------------------------------------------------------------- secrets and config


async def test_a_world_readable_secret_fails_with_the_chmod_fix(
    chain: Chain, tmp_path: Path, fake_alpaca: FakeAlpaca, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = _alpaca_extra(fake_alpaca.base_url, secret="fake-secret")
    config = _config(tmp_path, chain.deployment, ws_url=chain.ws_url, extra=extra, mode=0o644)
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
    extra = _alpaca_extra(fake_alpaca.base_url, key_id="")
    config = _config(tmp_path, chain.deployment, ws_url=chain.ws_url, extra=extra, mode=0o644)
    monkeypatch.setenv("BOT__BROKER__ALPACA__API_KEY_ID", "fake-key-id")
    monkeypatch.setenv("BOT__BROKER__ALPACA__API_SECRET", "fake-secret")
    results = await run_doctor(config, timeout_s=TIMEOUT_S)
    assert failing(results) == []
    assert "holds no secret" in by_name(results)["secrets"].detail


async def test_a_provider_url_with_a_key_is_a_secret(chain: Chain, tmp_path: Path) -> None:
    keyed = f"{chain.http_url}/v3/0123456789abcdef"
    config = _config(tmp_path, chain.deployment, ws_url=chain.ws_url, mode=0o640)
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
    config = _config(tmp_path, chain.deployment, ws_url=chain.ws_url, http_url=keyed)
    assert await doctor(config, as_json=True, timeout_s=TIMEOUT_S) == 1
    out = capsys.readouterr().out
    answer = json.loads(out)
    assert [c["name"] for c in answer["checks"] if not c["ok"]] == ["providers"]
    assert "0123456789abcdef" not in out
    assert "http://127.0.0.1:99999/<redacted>" in out


async def test_a_config_that_does_not_load_is_one_failing_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[orderbook]\naddress = "nope"\n')
    assert await doctor(config) == 3
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("FAIL  config")
    assert "orderbook.address" in out[0]
    assert await doctor(tmp_path / "missing.toml", as_json=True) == 3
    answer = json.loads(capsys.readouterr().out)
    assert answer["ok"] is False and answer["checks"][0]["name"] == "config"


# ----------------------------------------------------------------------------- another chain


@pytest.fixture
async def mainnet_stub() -> AsyncIterator[dict[str, Any]]:
    """A JSON-RPC node on loopback (HTTP POST and WebSocket) that says it is chain 1, with a
    settable latest block time: anvil here always runs as 31337, whose block-time check is
    skipped."""
    state: dict[str, Any] = {"timestamp": int(time.time())}

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        answers = {
            "eth_chainId": "0x1",
            "eth_blockNumber": "0x64",
            "eth_getCode": "0x6001",
            "eth_getBlockByNumber": {"number": "0x64", "timestamp": hex(state["timestamp"])},
            "eth_subscribe": "0x5ub",
            "eth_unsubscribe": True,
        }
        return {"jsonrpc": "2.0", "id": body["id"], "result": answers[body["method"]]}

    async def post(request: web.Request) -> web.Response:
        return web.json_response(answer(await request.json()))

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        async for message in socket:
            await socket.send_json(answer(json.loads(message.data)))
        return socket

    app = web.Application()
    app.router.add_post("/", post)
    app.router.add_get("/", websocket)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    state["http_url"], state["ws_url"] = f"http://127.0.0.1:{port}/", f"ws://127.0.0.1:{port}/"
    try:
        yield state
    finally:
        await runner.cleanup()


async def test_providers_on_different_chains_fail(
    chain: Chain, tmp_path: Path, mainnet_stub: dict[str, Any]
) -> None:
    config = _config(
        tmp_path, chain.deployment, ws_url=chain.ws_url, http_url=mainnet_stub["http_url"]
    )
    results = await run_doctor(config, timeout_s=TIMEOUT_S)
    assert failing(results) == ["providers"]
    detail = by_name(results)["providers"].detail
    assert "answers chain 1" in detail and "answers chain 31337" in detail


def _mainnet_config(
    tmp_path: Path, deployment: Deployment, stub: dict[str, Any], confirmations: int | None
) -> Path:
    return _config(
        tmp_path,
        deployment,
        ws_url=stub["ws_url"],
        http_url=stub["http_url"],
        confirmations=confirmations,
    )


@pytest.mark.parametrize(("offset_s", "ok"), [(0, True), (-120, False), (120, False)])
async def test_block_time_off_a_devnet(
    chain: Chain, tmp_path: Path, mainnet_stub: dict[str, Any], offset_s: int, ok: bool
) -> None:
    mainnet_stub["timestamp"] = int(time.time()) + offset_s
    config = _mainnet_config(tmp_path, chain.deployment, mainnet_stub, confirmations=12)
    results = await run_doctor(config, timeout_s=TIMEOUT_S)
    assert failing(results) == ([] if ok else ["block time"])
    check = by_name(results)["block time"]
    assert not check.skipped
    assert ("behind" if offset_s > 0 else "ahead of") in check.detail
    if not ok:
        assert "timedatectl set-ntp true" in check.fix


async def test_off_a_devnet_confirmations_are_required(
    tmp_path: Path, chain: Chain, mainnet_stub: dict[str, Any]
) -> None:
    config = _mainnet_config(tmp_path, chain.deployment, mainnet_stub, confirmations=None)
    results = await run_doctor(config, timeout_s=TIMEOUT_S)
    assert failing(results) == ["config"]
    check = by_name(results)["config"]
    assert "live.confirmations is not set and chain 1 is not a devnet" in check.detail
    assert "BOT__LIVE__CONFIRMATIONS" in check.fix


# ----------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("skew_s", "ok"), [(0, True), (30, True), (-30, True), (31, False), (-31, False)]
)
def test_clock_skew_limit_is_30_seconds(skew_s: int, ok: bool) -> None:
    check = clock_skew_check(1, 100, 1_000_000, 1_000_000 + skew_s)
    assert check.ok is ok and not check.skipped
    assert ("ahead of" if skew_s >= 0 else "behind") in check.detail


def test_clock_skew_is_skipped_on_a_devnet() -> None:
    check = clock_skew_check(31337, 100, 0, 1_000_000)
    assert check.ok and check.skipped


def test_provider_sources_include_fallbacks_once_and_name_their_keys() -> None:
    chain = SimpleNamespace(
        http_url="http://a:1",
        ws_url="ws://a:1",
        fallback_urls=["https://b/key123", "http://a:1", "wss://c"],
    )
    sources = provider_sources(SimpleNamespace(chain=chain))  # type: ignore[arg-type]
    assert [(s.key, s.url) for s in sources] == [
        ("chain.http_url", "http://a:1"),
        ("chain.ws_url", "ws://a:1"),
        ("chain.fallback_urls[0]", "https://b/key123"),
        ("chain.fallback_urls[2]", "wss://c"),
    ]
    assert "key123" not in sources[2].shown
    # a config without the key (before it exists) works too
    bare = SimpleNamespace(chain=SimpleNamespace(http_url="", ws_url="ws://a:1"))
    assert [s.key for s in provider_sources(bare)] == ["chain.ws_url"]  # type: ignore[arg-type]
