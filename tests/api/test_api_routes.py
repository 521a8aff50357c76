"""The read routes over real HTTP on a real SQLite database (SPEC §10): ``/api/status`` is the
``status --json`` object, ``/ready`` says why it is not ready, ``/api/alerts``, the page."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.api.runtime import alert_dicts
from bot.devnet.deploy import Deployment
from bot.ops.conditions import Alert, AlertKind
from bot.store import queries
from tests.api.api_kit import TOKEN, api_client, migrated_database
from tests.support.chain import Chain

HASH = "0x" + "ab" * 32


def _write(database: Path, *statements: tuple[str, tuple[Any, ...]]) -> None:
    with sqlite3.connect(database) as conn:
        for sql, params in statements:
            conn.execute(sql, params)


def _checkpoint(number: int) -> tuple[str, tuple[Any, ...]]:
    return (
        "INSERT INTO checkpoint (id, block_number, block_hash, updated_at) VALUES (1, ?, ?, 'x')"
        " ON CONFLICT (id) DO UPDATE SET block_number = excluded.block_number",
        (number, HASH),
    )


async def _database(tmp_path: Path, deployment: Deployment) -> Path:
    database = tmp_path / "bot.db"
    await migrated_database(database, deployment)
    return database


async def test_api_status_is_the_status_object(session_chain: Chain, tmp_path: Path) -> None:
    database = await _database(tmp_path, session_chain.deployment)
    _write(
        database,
        _checkpoint(40),
        ("INSERT INTO meta (key, value) VALUES ('head_block', '43')", ()),
    )
    async with api_client(database, confirmations=2) as client:
        answer = await client.get("/api/status")
        body = await answer.json()
    assert answer.status == 200 and answer.content_type == "application/json"
    assert body == queries.status(database, confirmations=2)
    assert body["checkpoint_block"] == 40 and body["head_block"] == 43


async def test_ready_waits_for_the_hand_off_and_a_near_checkpoint(
    session_chain: Chain, tmp_path: Path
) -> None:
    database = await _database(tmp_path, session_chain.deployment)
    state: dict[str, Any] = {"drained": False, "head": None}
    async with api_client(
        database,
        confirmations=3,
        handoff_drained=lambda: bool(state["drained"]),
        chain_head=lambda: state["head"],
    ) as client:

        async def ready() -> tuple[int, dict[str, Any]]:
            answer = await client.get("/ready")
            return answer.status, await answer.json()

        not_drained = await ready()
        state["drained"] = True
        no_checkpoint = await ready()
        _write(database, _checkpoint(100))
        state["head"] = 106  # 6 behind: more than confirmations + 2
        behind = await ready()
        state["head"] = 105  # exactly confirmations + 2
        at_edge = await ready()
        state["head"] = None  # no live head: the head `run` recorded counts
        _write(database, ("INSERT INTO meta (key, value) VALUES ('head_block', '100')", ()))
        recorded = await ready()
    assert not_drained[0] == 503 and "hand-off" in not_drained[1]["reason"]
    assert no_checkpoint[0] == 503 and "checkpoint" in no_checkpoint[1]["reason"]
    assert behind[0] == 503 and "6 blocks behind" in behind[1]["reason"]
    assert at_edge == (200, {"ready": True, "reason": None})
    assert recorded[0] == 200


async def test_alerts_route_lists_what_the_source_gives(
    session_chain: Chain, tmp_path: Path
) -> None:
    database = await _database(tmp_path, session_chain.deployment)
    alerts = [{"kind": "parked", "message": "AAPL parked", "at": "2026-01-02T03:04:05+00:00"}]
    async with api_client(database, alerts=lambda: alerts) as client:
        given = await (await client.get("/api/alerts")).json()
    async with api_client(database) as client:
        none = await (await client.get("/api/alerts")).json()
    sunk = [
        Alert(AlertKind.DRIFT, "MSFT drift 1", datetime(2026, 1, 2, tzinfo=UTC), details={"x": 1})
    ]
    async with api_client(database, alerts=lambda: alert_dicts(sunk)) as client:
        from_sink = await (await client.get("/api/alerts")).json()
    assert given == {"alerts": alerts}
    assert none == {"alerts": []}
    assert from_sink == {
        "alerts": [{"kind": "drift", "message": "MSFT drift 1", "at": "2026-01-02T00:00:00+00:00"}]
    }


async def test_status_page_and_its_files(session_chain: Chain, tmp_path: Path) -> None:
    database = await _database(tmp_path, session_chain.deployment)
    async with api_client(database, token=TOKEN) as client:
        page = await client.get("/")
        html = await page.text()
        script = await client.get("/static/page.js")
        js = await script.text()
        style = await client.get("/static/page.css")
    assert page.status == 200 and page.content_type == "text/html"
    assert '<meta name="viewport"' in html and 'id="positions"' in html
    assert page.headers["Cache-Control"] == "no-store"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert script.status == 200 and "/api/status" in js and "innerHTML" not in js
    assert style.status == 200 and style.content_type == "text/css"
    for body in (html, js):
        assert TOKEN not in body


async def test_job_routes_answer_503_until_the_service_is_open(
    session_chain: Chain, tmp_path: Path
) -> None:
    database = await _database(tmp_path, session_chain.deployment)
    async with api_client(database, token=TOKEN) as client:
        listed = await client.get("/api/backfill/jobs")
        body = await listed.json()
    assert listed.status == 503 and body["error"]["field"] is None


async def test_status_of_a_missing_database_is_503(tmp_path: Path) -> None:
    async with api_client(tmp_path / "none.db") as client:
        answer = await client.get("/api/status")
        body = await answer.json()
    assert answer.status == 503 and "no database" in body["error"]["message"]


async def test_unknown_api_routes_and_methods_answer_in_the_error_shape(
    session_chain: Chain, tmp_path: Path
) -> None:
    database = await _database(tmp_path, session_chain.deployment)
    async with api_client(database) as client:
        missing = await client.get("/api/nothing")
        missing_body = await missing.json()
        wrong = await client.get("/api/backfill/start")
        wrong_body = await wrong.json()
        page_404 = await client.get("/nothing")
    assert missing.status == 404 and missing_body["error"]["field"] is None
    assert wrong.status == 405 and wrong_body["error"]["message"]
    assert "POST" in wrong.headers["Allow"]
    assert page_404.status == 404
