"""Who may ask what (SPEC §10): POST/DELETE need the bearer token (403 without one configured,
401 with a missing or wrong one); off loopback every request needs it, ``/metrics`` and
``/health`` included; ``run`` refuses a non-loopback host without a token (exit 3, naming the
key); the token never appears in an answer or in ``check-config``."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from bot.api.app import ApiSources, install_api
from bot.config import MetricsSettings, is_loopback
from bot.errors import ConfigError
from bot.metrics import Metrics, MetricsServer
from tests.api.api_kit import TOKEN, api_client, bearer, free_port, migrated_database
from tests.support.chain import Chain

WRITES = (
    ("POST", "/api/backfill/start"),
    ("DELETE", "/api/backfill/jobs/1"),
)
READS = ("/", "/api/status", "/api/alerts", "/ready", "/api/backfill/jobs", "/static/page.js")


def _basic(token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"me:{token}".encode()).decode()}


async def test_writes_need_the_bearer_token(session_chain: Chain, tmp_path: Path) -> None:
    database = tmp_path / "bot.db"
    await migrated_database(database, session_chain.deployment)
    async with api_client(database, token="") as client:
        unset = [await client.request(m, p, headers=bearer()) for m, p in WRITES]
        unset_bodies = [await a.json() for a in unset]
        reads = [(await client.get(p)).status for p in ("/", "/api/status", "/api/alerts")]
    async with api_client(database, token=TOKEN) as client:
        missing = [await client.request(m, p) for m, p in WRITES]
        wrong = [await client.request(m, p, headers=bearer("nope")) for m, p in WRITES]
        basic = [await client.request(m, p, headers=_basic(TOKEN)) for m, p in WRITES]
        wrong_body = await wrong[0].text()
        # the right token gets through to the route (no job service here: 503, not 401/403)
        right = [await client.request(m, p, headers=bearer()) for m, p in WRITES]
    assert [a.status for a in unset] == [403, 403]
    assert all(
        b["error"]["field"] is None and "metrics.token" in b["error"]["message"]
        for b in unset_bodies
    )
    assert reads == [200, 200, 200]  # on loopback reads need nothing
    assert [a.status for a in missing] == [401, 401]
    assert [a.status for a in wrong] == [401, 401]
    assert [a.status for a in basic] == [401, 401]  # writes never take Basic (CSRF)
    assert [a.status for a in right] == [503, 503]
    assert TOKEN not in wrong_body


async def test_off_loopback_every_request_needs_the_token(
    session_chain: Chain, tmp_path: Path
) -> None:
    """The whole server (metrics and health too) with the middleware set up as off loopback."""
    database = tmp_path / "bot.db"
    await migrated_database(database, session_chain.deployment)
    sources = ApiSources(
        database=database,
        confirmations=lambda: 0,
        handoff_drained=lambda: True,
        chain_head=lambda: None,
    )
    port = free_port()

    async def served(token: str) -> dict[str, dict[str, int]]:
        server = MetricsServer(
            Metrics(),
            lambda: {"ok": True},
            configure=lambda app: install_api(app, sources, token=token, loopback=False),
        )
        await server.start(port)
        assert server.port == port
        seen: dict[str, dict[str, int]] = {}
        try:
            async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
                for path in ("/metrics", "/health", *READS):
                    row = seen.setdefault(path, {})
                    for name, headers in (
                        ("none", {}),
                        ("wrong", bearer("nope")),
                        ("bearer", bearer()),
                        ("basic", _basic(TOKEN)),
                    ):
                        async with http.get(path, headers=headers) as answer:
                            row[name] = answer.status
                            body = await answer.text()
                            assert TOKEN not in body
                            if answer.status == 401:
                                assert answer.headers["WWW-Authenticate"].startswith("Basic")
        finally:
            await server.stop()
        return seen

    with_token = await served(TOKEN)
    without = await served("")
    for path, row in with_token.items():
        assert row["none"] == 401 and row["wrong"] == 401, (path, row)
        assert row["bearer"] == row["basic"] != 401, (path, row)
        assert row["bearer"] in (200, 503), (path, row)  # 503: no job service in this app
    for path, row in without.items():
        assert set(row.values()) == {403}, (path, row)


def test_loopback_hosts() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "", "::", "10.0.0.5", "bot.example"))
    MetricsSettings(host="127.0.0.1").require_token_off_loopback()
    MetricsSettings(host="0.0.0.0", token=TOKEN).require_token_off_loopback()  # type: ignore[arg-type]
    MetricsSettings(host="0.0.0.0", port=0).require_token_off_loopback()  # server off
    with pytest.raises(ConfigError, match=r"metrics\.token"):
        MetricsSettings(host="0.0.0.0").require_token_off_loopback()


def _config(path: Path, chain: Chain, extra: str) -> Path:
    d = chain.deployment
    path.write_text(
        f"""
[chain]
ws_url = "{chain.ws_url}"
[orderbook]
address = "{d.orderbook}"
deployment_block = {d.deployment_block}
order_owner = "{d.order_owner}"
[database]
path = "{path.parent / "bot.db"}"
[metrics]
port = {free_port()}
{extra}
"""
    )
    return path


def _bot(
    config: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_run_refuses_a_public_host_without_a_token(session_chain: Chain, tmp_path: Path) -> None:
    config = _config(tmp_path / "bot.toml", session_chain, 'host = "0.0.0.0"')
    result = _bot(config, "run")
    assert result.returncode == 3, result.stderr
    assert "metrics.token" in result.stderr and "metrics.host" in result.stderr
    assert not (tmp_path / "bot.db").exists()  # refused before touching anything


def test_check_config_never_shows_the_token(session_chain: Chain, tmp_path: Path) -> None:
    config = _config(tmp_path / "bot.toml", session_chain, f'token = "{TOKEN}"')
    result = _bot(config, "check-config")
    assert result.returncode == 0, result.stderr
    assert TOKEN not in result.stdout + result.stderr
    assert "<redacted>" in result.stdout
