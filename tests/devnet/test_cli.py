"""`bot devnet …` end to end: subprocesses for the real entry points, in-process for the rest."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.devnet.cli import main
from bot.devnet.deploy import Deployment
from bot.devnet.plan import expected_net, make_plan
from bot.devnet.rpc import DevnetError, JsonRpcClient
from bot.devnet.state import expected_to_json, read_expected
from tests.support.chain import Chain

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("entry", [("-m", "bot.devnet.cli"), ("-m", "bot", "devnet")])
def test_up_writes_state_and_the_plans_expected_net(entry: tuple[str, ...], tmp_path: Path) -> None:
    state, out = tmp_path / "state", tmp_path / "expected.json"
    args = ["up", "--dir", str(state), "--fills", "30", "--seed", "5", "--expected-json", str(out)]
    done = _run(*entry, *args)
    assert done.returncode == 0, done.stderr + done.stdout
    expected = expected_to_json(expected_net(make_plan(5, 30)))
    assert out.read_text() == expected
    assert (state / "expected.json").read_text() == expected
    for ticker, value in json.loads(expected).items():
        assert f"{ticker}: {value}" in done.stdout
    deployment = Deployment.load(state / "deployment.json")
    settings = load_settings(state / "config.toml")
    assert settings.orderbook.address == deployment.orderbook
    assert settings.orderbook.order_owner == deployment.order_owner
    assert settings.orderbook.deployment_block == deployment.deployment_block
    assert Path(settings.database.path) == (state / "bot.db").resolve()
    assert settings.broker.kind == "dry-run"
    assert "Listening on" in (state / "anvil.log").read_text()
    # anvil was stopped on exit
    with JsonRpcClient(settings.chain.http_url) as rpc, pytest.raises(DevnetError):
        rpc.call("eth_chainId")


def test_up_against_a_running_node_then_simulate_more(chain: Chain, tmp_path: Path) -> None:
    state = tmp_path / "state"
    common = ["--dir", str(state), "--rpc-url", chain.http_url]
    assert main(["up", *common, "--fills", "12", "--seed", "8"]) == 0
    config = tomllib.loads((state / "config.toml").read_text())
    assert config["chain"] == {"ws_url": chain.ws_url, "http_url": chain.http_url}
    assert not (state / "anvil.log").exists()
    out = tmp_path / "all.json"
    assert main(["simulate", "--dir", str(state), "--fills", "9", "--seed", "4",
                 "--expected-json", str(out)]) == 0  # fmt: skip
    both = expected_net([*make_plan(8, 12), *make_plan(4, 9)])
    assert {t: v for t, v in read_expected(out).items() if v} == {
        t: v for t, v in both.items() if v
    }
    assert read_expected(state / "expected.json") == read_expected(out)


def test_up_with_rate_and_duration_keeps_expected_json_exact(tmp_path: Path) -> None:
    state, out = tmp_path / "state", tmp_path / "out.json"
    code = main(["up", "--dir", str(state), "--fills", "3", "--rate", "50", "--duration", "0.6",
                 "--expected-json", str(out)])  # fmt: skip
    assert code == 0
    final = read_expected(out)
    assert read_expected(state / "expected.json") == final
    assert final != expected_net(make_plan(1, 3))  # the continuous fills were added


def test_keep_running_with_duration_returns_zero(tmp_path: Path) -> None:
    assert main(["up", "--dir", str(tmp_path), "--fills", "0", "--keep-running",
                 "--duration", "0.2"]) == 0  # fmt: skip
    assert json.loads((tmp_path / "expected.json").read_text()) == {}


def test_a_fresh_up_removes_a_stale_database(tmp_path: Path) -> None:
    stale = tmp_path / "bot.db"
    stale.write_text("old chain")
    assert main(["up", "--dir", str(tmp_path), "--fills", "1"]) == 0
    assert not stale.exists()


@pytest.mark.parametrize(
    "argv",
    [["up", "--fills", "-1"], ["up", "--duration", "-3"], ["up", "--rate", "-1"]],
)
def test_usage_errors_exit_2(argv: list[str], tmp_path: Path) -> None:
    assert main([*argv, "--dir", str(tmp_path)]) == 2
    assert not (tmp_path / "deployment.json").exists()


def test_argparse_usage_errors_exit_2() -> None:
    done = _run("-m", "bot.devnet.cli", "up", "--no-such-flag")
    assert done.returncode == 2
    assert "--no-such-flag" in done.stderr
    assert _run("-m", "bot.devnet.cli").returncode == 2


def test_unreachable_node_exits_1(tmp_path: Path) -> None:
    done = _run("-m", "bot.devnet.cli", "up", "--dir", str(tmp_path), "--rpc-url",
                "http://127.0.0.1:9")  # fmt: skip
    assert done.returncode == 1
    assert "unreachable" in done.stderr


def test_simulate_without_a_devnet_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["simulate", "--dir", str(tmp_path)]) == 2
