"""Locating and running the pinned anvil binary."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bot.devnet.anvil import ANVIL_ENV, CHAIN_ID, AnvilNotFoundError, AnvilProcess, find_anvil
from bot.devnet.rpc import DevnetError, JsonRpcClient


def test_the_pinned_binary_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails (never skips) without `npm ci`: every chain test depends on it."""
    monkeypatch.delenv(ANVIL_ENV, raising=False)
    path = find_anvil()
    assert path.name == "anvil"
    assert "@foundry-rs" in str(path)


def test_env_override_wins_and_must_be_executable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "my-anvil"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv(ANVIL_ENV, str(fake))
    assert find_anvil() == fake
    monkeypatch.setenv(ANVIL_ENV, str(tmp_path / "missing"))
    with pytest.raises(AnvilNotFoundError, match=ANVIL_ENV):
        find_anvil()


def test_missing_binary_says_to_run_npm_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ANVIL_ENV, raising=False)
    with pytest.raises(AnvilNotFoundError, match="npm ci"):
        find_anvil([tmp_path])
    monkeypatch.setenv(ANVIL_ENV, str(tmp_path / "missing"))
    with pytest.raises(AnvilNotFoundError):
        AnvilProcess(tmp_path / "anvil.log").start()


def test_found_upward_from_a_subdirectory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ANVIL_ENV, raising=False)
    binary = tmp_path / "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_anvil([deep]) == binary


def test_anvil_runs_on_a_free_port_and_stops(tmp_path: Path) -> None:
    log = tmp_path / "anvil.log"
    with AnvilProcess(log) as anvil:
        assert anvil.port is not None and anvil.port > 0
        assert anvil.ws_url == f"ws://127.0.0.1:{anvil.port}"
        with JsonRpcClient(anvil.http_url) as rpc:
            assert int(rpc.call("eth_chainId"), 16) == CHAIN_ID
        url = anvil.http_url
        with AnvilProcess(tmp_path / "second.log") as second:
            assert second.port != anvil.port
    assert not anvil.is_running()
    assert "Listening on" in log.read_text()
    request = urllib.request.Request(
        url, data=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}).encode()
    )
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(request, timeout=2)
    with pytest.raises(DevnetError, match="not running"):
        _ = anvil.http_url


def test_a_binary_that_dies_at_start_is_reported_with_its_log(tmp_path: Path) -> None:
    broken = tmp_path / "anvil"
    broken.write_text("#!/bin/sh\necho 'boom: bad flag'\nexit 3\n")
    broken.chmod(0o755)
    with pytest.raises(DevnetError, match=r"(?s)exited with 3.*boom: bad flag"):
        AnvilProcess(tmp_path / "anvil.log", binary=broken).start()


def test_rpc_errors_are_devnet_errors(anvil: AnvilProcess) -> None:
    with (
        JsonRpcClient(anvil.http_url) as rpc,
        pytest.raises(DevnetError, match="no_such_method"),
    ):
        rpc.call("no_such_method")
    anvil.stop()
    with (
        JsonRpcClient(f"http://127.0.0.1:{_closed_port()}") as rpc,
        pytest.raises(DevnetError, match="unreachable"),
    ):
        rpc.call("eth_chainId")


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
