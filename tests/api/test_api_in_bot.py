"""The API as ``bot run`` serves it on the devnet (SPEC §10): ``/api/status`` is what
``bot status --json`` prints, ``/ready`` turns 200 once live, a job started over HTTP re-scans
without adding what is queued and without moving the checkpoint, and a job running when the
process is SIGKILLed shows as ``interrupted`` after the restart."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from bot.devnet.plan import make_plan
from bot.devnet.simulate import run_plan
from tests.api.api_kit import TOKEN, GatedProxy, bearer, free_port, head_of, orderbook_logs
from tests.support.botproc import BotProcess, wait_caught_up, write_config
from tests.support.chain import Chain


def _cli_status(config: Path) -> dict[str, Any]:
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


async def _until(
    http: aiohttp.ClientSession, path: str, done: Any, *, timeout_s: float = 30
) -> Any:
    """GET ``path`` until ``done(status, body)`` holds; the last answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        async with http.get(path) as answer:
            body = await answer.json()
            if done(answer.status, body):
                return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never got there: {answer.status} {body}")
        await asyncio.sleep(0.05)


async def _live(bot: BotProcess, database: Path, head: int) -> None:
    await asyncio.to_thread(bot.wait_for_log, "live: following heads")
    await asyncio.to_thread(wait_caught_up, database, head, bot=bot)


async def test_api_of_a_running_bot(chain: Chain, tmp_path: Path) -> None:
    run_plan(chain.rpc, chain.deployment, make_plan(seed=91, fills=20))
    head = head_of(chain.rpc)
    first = chain.deployment.deployment_block
    logs = orderbook_logs(chain.rpc, chain.deployment, first, head)
    database = tmp_path / "bot.db"
    proxy = await GatedProxy(chain.http_url).start()
    config = write_config(
        tmp_path / "bot.toml",
        chain.deployment,
        ws_url=chain.ws_url,
        http_url=proxy.url,
        database=database,
        extra=f'token = "{TOKEN}"',
    )
    port = free_port()
    env = {"BOT__METRICS__PORT": str(port)}
    base = f"http://127.0.0.1:{port}"
    bot = BotProcess(config, env=env).start()
    try:
        await _live(bot, database, head)
        async with aiohttp.ClientSession(base) as http:
            ready = await _until(http, "/ready", lambda status, _body: status == 200)
            async with http.get("/api/status") as answer:
                served = await answer.json()
            assert served == await asyncio.to_thread(_cli_status, config)
            checkpoint = served["checkpoint_block"]
            async with http.post("/api/backfill/start", json={"from": first, "to": head}) as no:
                assert no.status == 401
            async with http.post(
                "/api/backfill/start", json={"from": first, "to": head}, headers=bearer()
            ) as answer:
                assert answer.status == 200, await answer.text()
                job_id = (await answer.json())["job_id"]
            done = await _until(
                http, f"/api/backfill/status/{job_id}", lambda _s, body: body["state"] != "running"
            )
            assert (await asyncio.to_thread(_cli_status, config))["checkpoint_block"] == checkpoint

            proxy.gate.clear()  # the next job's eth_getLogs waits: it is running at the kill
            async with http.post(
                "/api/backfill/start", json={"from": first, "to": head}, headers=bearer()
            ) as answer:
                killed_id = (await answer.json())["job_id"]
            await asyncio.wait_for(proxy.held.wait(), 10)
        await asyncio.to_thread(bot.kill)
        proxy.gate.set()

        bot = BotProcess(config, env=env).start()
        await _live(bot, database, head)
        async with aiohttp.ClientSession(base) as http:
            listed = await _until(http, "/api/backfill/jobs", lambda status, _b: status == 200)
    finally:
        proxy.gate.set()
        if bot.running():
            assert await asyncio.to_thread(bot.stop) == 0, bot.log_tail()
        await proxy.stop()

    assert ready == {"ready": True, "reason": None}
    assert done["state"] == "done", done
    assert (done["events_found"], done["events_added"]) == (len(logs), 0)
    assert [(job["job_id"], job["state"]) for job in listed] == [
        (job_id, "done"),
        (killed_id, "interrupted"),
    ]
    assert listed[0] == done
