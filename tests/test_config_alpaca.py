"""``broker.alpaca`` keys: the client's request budget (``requests_per_minute``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import load
from bot.errors import ConfigError

MINIMAL = """
[orderbook]
address = "0x5fbdb2315678afecb367f032d93f642f64180aa3"
order_owner = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_requests_per_minute_defaults_to_alpacas_quota(tmp_path: Path) -> None:
    assert load(write(tmp_path, MINIMAL), {}).settings.broker.alpaca.requests_per_minute == 200


def test_requests_per_minute_from_file_and_environment(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "[broker.alpaca]\nrequests_per_minute = 1000\n")
    assert load(path, {}).settings.broker.alpaca.requests_per_minute == 1000
    env = {"BOT__BROKER__ALPACA__REQUESTS_PER_MINUTE": "50"}
    assert load(path, env).settings.broker.alpaca.requests_per_minute == 50


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", "broker.alpaca.requests_per_minute = 0 (in the config file): expected a number > 0"),
        (
            "-5",
            "broker.alpaca.requests_per_minute = -5 (in the config file): expected a number > 0",
        ),
        ("1.5", "broker.alpaca.requests_per_minute = 1.5 (in the config file): expected a whole"),
        ('"fast"', "broker.alpaca.requests_per_minute = 'fast' (in the config file): expected a"),
    ],
)
def test_a_bad_requests_per_minute_names_the_key(tmp_path: Path, value: str, expected: str) -> None:
    path = write(tmp_path, MINIMAL + f"[broker.alpaca]\nrequests_per_minute = {value}\n")
    with pytest.raises(ConfigError) as caught:
        load(path, {})
    assert expected in str(caught.value)


def test_a_bad_requests_per_minute_from_the_environment_says_so(tmp_path: Path) -> None:
    env = {"BOT__BROKER__ALPACA__REQUESTS_PER_MINUTE": "0"}
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, MINIMAL), env)
    message = str(caught.value)
    assert "broker.alpaca.requests_per_minute" in message
    assert "from environment BOT__BROKER__ALPACA__REQUESTS_PER_MINUTE" in message
