"""``chain.fallback_urls`` (SPEC §7, §9): validated, and redacted wherever it is shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import load, redacted
from bot.errors import ConfigError

BASE = """
[orderbook]
address = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
order_owner = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
"""


def _write(tmp_path: Path, chain: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f"[chain]\n{chain}\n{BASE}")
    return path


def test_fallback_urls_default_to_none_and_are_redacted(tmp_path: Path) -> None:
    assert load(_write(tmp_path, ""), environ={}).settings.chain.fallback_urls == []
    path = _write(tmp_path, 'fallback_urls = ["https://eth.example/v2/KEY123", "wss://b.example"]')
    settings = load(path, environ={}).settings
    assert settings.chain.fallback_urls == ["https://eth.example/v2/KEY123", "wss://b.example"]
    shown = redacted(settings)["chain"]["fallback_urls"]
    assert shown == ["https://eth.example/<redacted>", "wss://b.example"]


def test_fallback_urls_from_the_environment(tmp_path: Path) -> None:
    env = {"BOT__CHAIN__FALLBACK_URLS": '["http://127.0.0.1:1"]'}
    assert load(_write(tmp_path, ""), environ=env).settings.chain.fallback_urls == [
        "http://127.0.0.1:1"
    ]


def test_a_fallback_url_that_is_no_provider_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"chain\.fallback_urls\.0 = 'ftp://x'"):
        load(_write(tmp_path, 'fallback_urls = ["ftp://x"]'), environ={})
