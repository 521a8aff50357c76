"""``bot doctor [--json]`` (SPEC §10) against a real anvil and real SQLite files: a healthy
devnet passes every line (the block-time check skipped on 31337), and each fault (node down or
silent, wrong orderbook, another chain's database, an unwritable folder, a config that does not
load) fails the check that names it, with its fix, and a non-zero exit. The doctor never
writes the database. Broker, secrets and off-devnet checks: ``test_doctor_broker.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bot.commands.doctor import doctor
from bot.doctor import run_doctor
from bot.doctor.chain_checks import clock_skew_check, provider_sources
from bot.doctor.local_checks import traded_tickers
from bot.store.connection import open_database
from tests.commands.doctor_kit import (
    ALL_DEVNET_CHECKS,
    NO_CODE_ADDRESS,
    TIMEOUT_S,
    by_name,
    database_for,
    digest,
    doctor_cli,
    doctor_config,
    failing,
    free_port,
    served,
    snapshot,
)
from tests.support.chain import Chain


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
    config = doctor_config(tmp_path, chain.deployment, ws_url=chain.ws_url, http_url=chain.http_url)
    done = doctor_cli(config)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [
        "skip" if "block time" in line else "ok" for line in lines
    ]
    assert len(lines) == len(ALL_DEVNET_CHECKS)
    assert "new database will be created" in done.stdout
    assert "dry-run (no orders leave this machine)" in done.stdout
    assert not (tmp_path / "bot.db").exists()  # the doctor creates nothing

    as_json = doctor_cli(config, "--json")
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
    config = doctor_config(tmp_path, chain.deployment, ws_url=f"ws://127.0.0.1:{dead}")
    started = time.monotonic()
    done = doctor_cli(config)
    assert done.returncode == 1, done.stdout + done.stderr
    assert time.monotonic() - started < 30  # a refused connection fails at once, no retry loop
    failed_lines = [line for line in done.stdout.splitlines() if line.startswith("FAIL")]
    assert [line.split()[1] for line in failed_lines] == ["providers", "subscription"]
    assert f"chain.ws_url (ws://127.0.0.1:{dead}) does not answer" in failed_lines[0]
    assert "fix: start the node, or correct chain.ws_url" in failed_lines[0]
    # what needs a provider is not blamed: it says why it was not checked
    assert "skip  orderbook" in done.stdout

    answer = json.loads(doctor_cli(config, "--json").stdout)
    assert answer["ok"] is False
    assert [c["name"] for c in answer["checks"] if not c["ok"]] == ["providers", "subscription"]


async def test_a_fallback_down_names_its_key(chain: Chain, tmp_path: Path) -> None:
    dead = free_port()
    config = doctor_config(
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
    config = doctor_config(tmp_path, chain.deployment, ws_url=f"ws://127.0.0.1:{port}")
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
    config = doctor_config(tmp_path, wrong, ws_url=chain.ws_url)
    done = doctor_cli(config)
    assert done.returncode == 1, done.stdout + done.stderr
    failed_lines = [line for line in done.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed_lines) == 1
    assert failed_lines[0].split()[1] == "orderbook"
    assert f"no contract code at orderbook.address {NO_CODE_ADDRESS}" in failed_lines[0]
    assert "fix: correct orderbook.address" in failed_lines[0]


async def test_deployment_block_above_the_head_fails(chain: Chain, tmp_path: Path) -> None:
    future = dataclasses.replace(chain.deployment, deployment_block=10**9)
    results = await run_doctor(doctor_config(tmp_path, future, ws_url=chain.ws_url))
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
    await database_for(database, served(chain.deployment, **changes))
    before = digest(database)
    config = doctor_config(tmp_path, chain.deployment, ws_url=chain.ws_url, database=database)
    results = await run_doctor(config, timeout_s=TIMEOUT_S)
    assert failing(results) == ["database"]
    check = by_name(results)["database"]
    assert f"serves {named}" in check.detail
    assert "point database.path at this chain's database" in check.fix
    assert digest(database) == before


async def test_this_chains_database_passes_and_is_not_written(chain: Chain, tmp_path: Path) -> None:
    database = tmp_path / "bot.db"
    await database_for(database, served(chain.deployment))
    config = doctor_config(tmp_path, chain.deployment, ws_url=chain.ws_url, database=database)
    before = snapshot(database)
    results = await run_doctor(config, timeout_s=TIMEOUT_S)
    assert failing(results) == []
    check = by_name(results)["database"]
    assert "serves chain 31337" in check.detail and "writable" in check.detail
    # nothing written, no probe file left behind
    assert snapshot(database) == before


async def test_a_database_in_use_is_read_through_its_wal(chain: Chain, tmp_path: Path) -> None:
    """While ``run`` holds the database open (its WAL and shared memory exist), the doctor
    reads it like any reader and still writes nothing."""
    database = tmp_path / "bot.db"
    conn, _meta = await open_database(database, served(chain.deployment))
    try:
        await conn.execute(
            "INSERT INTO positions (ticker, onchain_net, hedged, in_flight, updated_at) "
            "VALUES ('AAPL', '1', '0', '0', 'now')"
        )  # committed into the WAL, not yet into the file
        config = doctor_config(tmp_path, chain.deployment, ws_url=chain.ws_url, database=database)
        assert traded_tickers(database) == ["AAPL"]
        results = await run_doctor(config, timeout_s=TIMEOUT_S)
        assert failing(results) == []
        assert "serves chain 31337" in by_name(results)["database"].detail
    finally:
        await conn.close()


async def test_a_database_of_a_newer_version_fails(chain: Chain, tmp_path: Path) -> None:
    database = tmp_path / "bot.db"
    await database_for(database, served(chain.deployment))
    with sqlite3.connect(database) as conn:
        conn.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'x', 'now')"
        )
    config = doctor_config(tmp_path, chain.deployment, ws_url=chain.ws_url, database=database)
    check = by_name(await run_doctor(config, timeout_s=TIMEOUT_S))["database"]
    assert not check.ok
    assert "newer version" in check.detail and "upgrade the bot" in check.fix


async def test_not_a_database_fails(chain: Chain, tmp_path: Path) -> None:
    database = tmp_path / "bot.db"
    database.write_bytes(b"this is not SQLite" * 100)
    config = doctor_config(tmp_path, chain.deployment, ws_url=chain.ws_url, database=database)
    check = by_name(await run_doctor(config, timeout_s=TIMEOUT_S))["database"]
    assert not check.ok
    assert "cannot be read as a SQLite database" in check.detail


def test_unwritable_directory_fails_the_database_check(
    chain: Chain, tmp_path: Path, unwritable_database: Path
) -> None:
    config = doctor_config(
        tmp_path, chain.deployment, ws_url=chain.ws_url, database=unwritable_database
    )
    done = doctor_cli(config)
    assert done.returncode == 1, done.stdout + done.stderr
    failed_lines = [line for line in done.stdout.splitlines() if line.startswith("FAIL")]
    assert [line.split()[1] for line in failed_lines] == ["database"]
    assert "is not writable" in failed_lines[0]
    assert f"fix: create {unwritable_database.parent}" in failed_lines[0]


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
