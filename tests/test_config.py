"""Config loading: file + BOT__ environment overrides, strict validation, redaction."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import load, redact_url, redacted
from bot.errors import ConfigError

ORDERBOOK = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
OWNER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
MINIMAL = f"""
[orderbook]
address = "{ORDERBOOK.lower()}"
order_owner = "{OWNER}"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_minimal_file_gets_spec_defaults(tmp_path: Path) -> None:
    loaded = load(write(tmp_path, MINIMAL), {})
    settings = loaded.settings
    assert settings.orderbook.address == ORDERBOOK  # lowercase in, checksummed out
    assert settings.chain.ws_url == "ws://127.0.0.1:8545"
    assert settings.chain.rpc_url == "ws://127.0.0.1:8545"
    assert settings.backfill.workers == 8
    assert settings.backfill.batch_blocks == 1000
    assert settings.live.confirmations is None
    assert loaded.confirmations_set is False
    assert settings.accumulator.threshold_shares == 1
    assert settings.accumulator.stablecoins == ["USDC"]
    assert settings.accumulator.equity_suffixes == ["s1", "0x"]
    assert settings.accumulator.equity_prefixes == ["wt"]
    assert settings.broker.kind == "dry-run"
    assert settings.broker.max_rejections == 3
    assert settings.metrics.port == 9464
    assert loaded.database_path == tmp_path / "bot.db"


def test_environment_overrides_parse_toml_literals_and_keep_strings_verbatim(
    tmp_path: Path,
) -> None:
    env = {
        "BOT__BACKFILL__WORKERS": "4",
        "BOT__ACCUMULATOR__STABLECOINS": '["USDC", "USDT"]',
        "BOT__LIVE__CONFIRMATIONS": "12",
        "BOT__DATABASE__PATH": "7",  # a string key: taken verbatim, not parsed as a number
        "BOT__BROKER__ALPACA__API_SECRET": "s3cr3t value with spaces",
        "UNRELATED": "x",
    }
    loaded = load(write(tmp_path, MINIMAL), env)
    settings = loaded.settings
    assert settings.backfill.workers == 4
    assert settings.accumulator.stablecoins == ["USDC", "USDT"]
    assert settings.live.confirmations == 12
    assert loaded.confirmations_set is True
    assert settings.database.path == "7"
    assert settings.broker.alpaca.api_secret.get_secret_value() == "s3cr3t value with spaces"


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        (MINIMAL + "[backfill]\nwrokers = 3\n", {}, "backfill.wrokers = 3 (in the config file)"),
        (MINIMAL + "[backfill]\nworkers = -1\n", {}, "backfill.workers = -1"),
        (MINIMAL, {"BOT__BACKFILL__WORKERS": "-1"}, "from environment BOT__BACKFILL__WORKERS"),
        (MINIMAL, {"BOT__BACKFILL__WORKERS": "many"}, "BOT__BACKFILL__WORKERS = 'many'"),
        (MINIMAL, {"BOT__BACKFIL__WORKERS": "2"}, "backfil.workers is not a config key"),
        (
            MINIMAL,
            {"BOT__ACCUMULATOR__THRESHOLD_SHARES": "1.5"},
            "a fractional threshold needs broker.fractional = true",
        ),
        (MINIMAL, {"BOT__ACCUMULATOR__THRESHOLD_SHARES": "0"}, "a number of shares > 0"),
        (MINIMAL, {"BOT__ACCUMULATOR__THRESHOLD_SHARES": "true"}, "a number of shares > 0"),
        (MINIMAL, {"BOT__BROKER__KIND": "alpaca"}, "needs broker.alpaca.api_key_id and"),
        (MINIMAL, {"BOT__ORDERBOOK__ADDRESS": "0x1234"}, "orderbook.address = '0x1234'"),
        (
            MINIMAL,
            {"BOT__ORDERBOOK__ADDRESS": ORDERBOOK[:-1] + "A"},  # broken checksum
            "EIP-55 checksum",
        ),
        (MINIMAL, {"BOT__BROKER__KIND": "schwab"}, "one of 'dry-run' or 'alpaca'"),
        (MINIMAL, {"BOT__CHAIN__WS_URL": "http://x"}, "ws:// or wss://"),
        ("[orderbook]\n", {}, "orderbook.address (in the config file): expected a value"),
        ("not toml [", {}, "is not valid TOML"),
        (MINIMAL, {"BOT__BACKFILL": "3"}, "expected BOT__SECTION__KEY"),
    ],
)
def test_bad_config_names_key_value_and_expected_form(
    tmp_path: Path, text: str, env: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, text), env)
    assert expected in str(caught.value)


def test_missing_file_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--config PATH"):
        load(tmp_path / "nope.toml", {})


def test_a_bad_secret_is_never_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, MINIMAL + "[broker.alpaca]\napi_secret = 42\n"), {})
    assert "42" not in str(caught.value)
    assert "broker.alpaca.api_secret = <redacted>" in str(caught.value)


def test_redacted_hides_secrets_and_url_credentials(tmp_path: Path) -> None:
    env = {
        "BOT__BROKER__ALPACA__API_SECRET": "topsecret",
        "BOT__BROKER__ALPACA__API_KEY_ID": "AKID123",
        "BOT__CHAIN__WS_URL": "wss://user:pw@mainnet.example.io/ws/v3/apikey123",
    }
    shown = json.dumps(redacted(load(write(tmp_path, MINIMAL), env).settings))
    for secret in ("topsecret", "AKID123", "apikey123", "user:pw"):
        assert secret not in shown
    assert "wss://mainnet.example.io/<redacted>" in shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("ws://127.0.0.1:8545", "ws://127.0.0.1:8545"),
        ("https://a:b@host.io/v2/key?x=1", "https://host.io/<redacted>"),
        ("", ""),
        ("garbage", "<redacted>"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_config_exit_codes_and_redaction(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL + '[broker.alpaca]\napi_secret = "hunter2"\n')
    ok = run_cli("check-config", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "hunter2" not in ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["orderbook"]["address"] == ORDERBOOK

    bad = run_cli("check-config", cwd=tmp_path, env={"BOT__BACKFILL__WORKERS": "-2"})
    assert bad.returncode == 3
    assert "backfill.workers = -2" in bad.stderr

    # --config is accepted after the command too
    other = tmp_path / "sub"
    other.mkdir()
    after = run_cli("check-config", "--config", str(tmp_path / "config.toml"), cwd=other)
    assert after.returncode == 0, after.stderr

    usage = run_cli("no-such-command", cwd=tmp_path)
    assert usage.returncode == 2


def test_shipped_config_loads_and_leaves_confirmations_unset() -> None:
    shipped = Path(__file__).parent.parent / "config.toml"
    loaded = load(shipped, {})
    assert loaded.settings.live.confirmations is None
    assert not loaded.confirmations_set
    assert "# confirmations = 12" in shipped.read_text()
    assert loaded.settings.broker.kind == "dry-run"


def test_run_with_alpaca_and_no_keys_is_a_config_error_naming_the_keys(tmp_path: Path) -> None:
    """Asking for Alpaca without keys stops the bot at once (never a silent dry run)."""
    write(tmp_path, MINIMAL)
    result = run_cli("run", cwd=tmp_path, env={"BOT__BROKER__KIND": "alpaca"})
    assert result.returncode == 3
    assert "BOT__BROKER__ALPACA__API_KEY_ID" in result.stderr
    assert not (tmp_path / "bot.db").exists()


def test_a_fractional_threshold_with_fractional_hedges_is_exact(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL)
    env = {"BOT__ACCUMULATOR__THRESHOLD_SHARES": "0.1", "BOT__BROKER__FRACTIONAL": "true"}
    loaded = load(tmp_path / "config.toml", env)
    assert str(loaded.settings.accumulator.threshold_shares) == "0.1"  # never a float


def test_seed_names_are_aliases_and_bot_variables_win(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL)
    loaded = load(
        tmp_path / "config.toml",
        {"BACKFILL_WORKERS": "3", "BACKFILL_BATCH_SIZE": "250", "BACKFILL_START_HEIGHT": "7"},
    )
    assert (loaded.settings.backfill.workers, loaded.settings.backfill.batch_blocks) == (3, 250)
    assert loaded.backfill_from == 7 and loaded.backfill_to is None
    assert loaded.origins["backfill.workers"] == (
        "environment BACKFILL_WORKERS (alias of backfill.workers)"
    )
    assert loaded.origins["orderbook.address"] == "config file"
    assert loaded.origins["live.stale_after_s"] == "default"
    both = load(tmp_path / "config.toml", {"BACKFILL_WORKERS": "3", "BOT__BACKFILL__WORKERS": "5"})
    assert both.settings.backfill.workers == 5
    assert both.origins["backfill.workers"] == "environment BOT__BACKFILL__WORKERS"
    with pytest.raises(ConfigError, match="BACKFILL_WORKERS"):
        load(tmp_path / "config.toml", {"BACKFILL_WORKERS": "0"})
    with pytest.raises(ConfigError, match="BACKFILL_END_HEIGHT = 'soon'"):
        load(tmp_path / "config.toml", {"BACKFILL_END_HEIGHT": "soon"})


def test_check_config_prints_where_each_value_came_from(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL)
    result = run_cli("check-config", cwd=tmp_path, env={"BACKFILL_WORKERS": "2"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["backfill"]["workers"] == 2
    assert "backfill.workers: environment BACKFILL_WORKERS (alias of backfill.workers)" in (
        result.stderr
    )
    assert "orderbook.address: config file" in result.stderr
