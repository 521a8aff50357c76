"""The status page in a real browser (headless Debian chromium) against a real ``bot run`` on the
devnet (SPEC §10): the positions table shows the tickers and amounts that ``bot status --json``
has, rounded as the page rounds them, and follows new fills.

``BOT_SCREENSHOT=1`` also rewrites ``docs/status-page.png`` from this test's bot (normal runs
leave the tracked file alone).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.devnet.plan import make_plan
from bot.devnet.simulate import run_plan
from tests.api.api_kit import free_port, head_of
from tests.api.browser_kit import chromium, dump_dom, read_page, screenshot, shown_shares
from tests.support.botproc import BotProcess, wait_caught_up, wait_for, write_config
from tests.support.chain import Chain

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _status(config: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config), "status", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def _expected(report: dict[str, Any]) -> list[dict[str, str]]:
    fields = (
        "onchain_net_shares",
        "hedged_shares",
        "in_flight_shares",
        "unhedged_shares",
        "broker_position_shares",
        "drift_shares",
    )
    rows = []
    for position in report["positions"]:
        row = {"ticker": position["ticker"], "parked": "parked" if position["parked"] else "no"}
        row.update({key: shown_shares(position[key]) for key in fields})
        rows.append(row)
    return rows


def _page_once(url: str, profile: Path, report: dict[str, Any]) -> dict[str, Any]:
    page = read_page(dump_dom(url, profile))
    return {
        "positions": page.tables.get("positions", []),
        "latest": page.tables.get("executions-latest", []),
        "head": page.texts.get("head"),
        "checkpoint": page.texts.get("checkpoint"),
        "processed": page.texts.get("queue-processed"),
        "expected": _expected(report),
    }


def _page_matches(url: str, profile: Path, config: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load the page until it shows what ``status --json`` shows (the page refreshes itself; a
    head arriving between the two reads is the only reason for a retry)."""
    seen: list[dict[str, Any]] = []

    def matches() -> tuple[dict[str, Any], dict[str, Any]] | None:
        report = _status(config)
        shown = _page_once(url, profile, report)
        seen.append(shown)
        if shown["positions"] == shown["expected"] and shown["checkpoint"] == str(
            report["checkpoint_block"]
        ):
            return report, shown
        return None

    return wait_for(
        matches,
        timeout_s=60,
        what="the page to show the positions of status --json",
        on_timeout=lambda: json.dumps(seen[-1:], indent=1),
    )


def test_page_shows_the_positions_of_status_and_follows_fills(chain: Chain, tmp_path: Path) -> None:
    chromium()  # fail at once, naming the install command, when the browser is missing
    database = tmp_path / "bot.db"
    port = free_port()
    config = write_config(
        tmp_path / "bot.toml",
        chain.deployment,
        ws_url=chain.ws_url,
        database=database,
    )
    run_plan(chain.rpc, chain.deployment, make_plan(seed=81, fills=24))
    bot = BotProcess(config, env={"BOT__METRICS__PORT": str(port)}).start()
    url = f"http://127.0.0.1:{port}/"
    try:
        bot.wait_for_log("live: following heads")
        wait_caught_up(database, head_of(chain.rpc), bot=bot)
        first, shown = _page_matches(url, tmp_path / "profile", config)
        assert first["positions"], "the plan should leave positions"
        assert shown["positions"] and shown["latest"], shown
        assert shown["processed"] == str(first["queue"]["processed"])

        run_plan(chain.rpc, chain.deployment, make_plan(seed=82, fills=24))
        wait_caught_up(database, head_of(chain.rpc), bot=bot)
        second, shown_after = _page_matches(url, tmp_path / "profile", config)
        assert second["positions"] != first["positions"], "new fills should move positions"
        assert shown_after["positions"] != shown["positions"]

        if os.environ.get("BOT_SCREENSHOT") == "1":
            DOCS.mkdir(exist_ok=True)
            screenshot(url, tmp_path / "profile", DOCS / "status-page.png")
        phone = tmp_path / "phone.png"
        screenshot(url, tmp_path / "profile", phone, size="390,844")
    finally:
        assert bot.stop() == 0, bot.log_tail()


def test_a_missing_browser_fails_naming_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y chromium"):
        chromium()
