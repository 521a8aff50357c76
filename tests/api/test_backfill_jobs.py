"""Backfill jobs over real HTTP against a real anvil and a real SQLite database (SPEC §10).

A job adds exactly the events missing from the queue (``events_found`` counts all it saw), never
moves the checkpoint, never revives or removes a row; it can be cancelled; a job running when the
service stops, or left running by a dead process, is ``interrupted``; bad input is a 4xx naming
the field.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bot.devnet.plan import make_plan
from bot.devnet.simulate import run_plan
from bot.store.connection import connect
from bot.store.queue import enqueue, owners_text
from tests.api.api_kit import (
    TOKEN,
    GatedProxy,
    api_client,
    bearer,
    head_of,
    job_service,
    migrated_database,
    orderbook_logs,
)
from tests.support.chain import Chain
from tests.support.proxies import Injection, RpcProxy

STATUS_KEYS = {
    "job_id",
    "state",
    "from",
    "to",
    "blocks_done",
    "blocks_total",
    "events_found",
    "events_added",
    "started_at",
    "finished_at",
    "error",
}


def _rows(database: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _set_checkpoint(database: Path, number: int, block_hash: str) -> None:
    conn = sqlite3.connect(database)
    try:
        conn.execute(
            "INSERT INTO checkpoint (id, block_number, block_hash, updated_at)"
            " VALUES (1, ?, ?, 'test')",
            (number, block_hash),
        )
        conn.commit()
    finally:
        conn.close()


def _checkpoint(database: Path) -> tuple[Any, ...]:
    return _rows(database, "SELECT block_number, block_hash, updated_at FROM checkpoint")[0]


@pytest.fixture
def filled(chain: Chain) -> tuple[int, int]:
    """Fills on the chain; the block range that holds them."""
    run_plan(chain.rpc, chain.deployment, make_plan(seed=71, fills=30))
    return chain.deployment.deployment_block, head_of(chain.rpc)


async def test_a_job_adds_exactly_the_missing_events(
    chain: Chain, db_path: Path, filled: tuple[int, int]
) -> None:
    first, last = filled
    logs = orderbook_logs(chain.rpc, chain.deployment, first, last)
    assert len(logs) >= 12, "the plan should leave enough logs to leave some out"
    await migrated_database(db_path, chain.deployment)
    conn = await connect(db_path)
    try:
        queued = logs[::3]
        assert (await enqueue(conn, queued)).inserted == len(queued)
    finally:
        await conn.close()
    # one queued row already processed, one removed: a job must leave both exactly as they are
    kept = {
        (queued[0].tx_hash, queued[0].log_index): "processed",
        (queued[1].tx_hash, queued[1].log_index): "removed",
    }
    with sqlite3.connect(db_path) as admin:
        for (tx, index), state in kept.items():
            admin.execute(
                "UPDATE events SET status = ? WHERE tx_hash = ? AND log_index = ?",
                (state, tx, index),
            )
    middle = (first + last) // 2
    block = chain.rpc.call("eth_getBlockByNumber", [hex(middle), False])
    _set_checkpoint(db_path, middle, block["hash"])
    checkpoint_before = _checkpoint(db_path)

    async with (
        job_service(db_path, chain.deployment, chain.http_url, batch_blocks=3) as jobs,
        api_client(db_path, jobs=jobs, token=TOKEN) as client,
    ):
        answer = await client.post(
            "/api/backfill/start", json={"from": first, "to": last}, headers=bearer()
        )
        assert answer.status == 200, await answer.text()
        job_id = (await answer.json())["job_id"]
        final = await jobs.wait(job_id)
        reply = await client.get(f"/api/backfill/status/{job_id}")
        assert reply.status == 200
        shown = await reply.json()
        again = await client.post(
            "/api/backfill/start", json={"from": first, "to": last}, headers=bearer()
        )
        second = await jobs.wait((await again.json())["job_id"])
        listed = await (await client.get("/api/backfill/jobs")).json()

    assert shown == final and set(shown) == STATUS_KEYS
    assert shown["state"] == "done" and shown["error"] is None, shown
    assert shown["from"] == first and shown["to"] == last
    assert shown["blocks_done"] == shown["blocks_total"] == last - first + 1
    assert shown["events_found"] == len(logs)
    assert shown["events_added"] == len(logs) - len(queued)
    assert shown["started_at"] and shown["finished_at"]
    assert second is not None
    assert (second["events_found"], second["events_added"]) == (len(logs), 0)
    assert [job["job_id"] for job in listed] == [job_id, second["job_id"]]
    assert listed[0] == shown

    rows = _rows(db_path, "SELECT tx_hash, log_index, status FROM events")
    assert {(tx, index) for tx, index, _ in rows} == {(log.tx_hash, log.log_index) for log in logs}
    assert len(rows) == len(logs)
    # a log of another owner is stored processed (bot.store.queue): only ours wait pending
    ours = chain.deployment.order_owner.lower()
    owners = {(log.tx_hash, log.log_index): owners_text(log) for log in logs}
    stored = {
        key: "processed" if found is not None and ours not in found else "pending"
        for key, found in owners.items()
    }
    assert set(stored.values()) == {"pending", "processed"}
    for tx, index, state in rows:
        assert state == kept.get((tx, index), stored[(tx, index)]), (tx, index, state)
    assert _checkpoint(db_path) == checkpoint_before


async def test_a_window_too_large_for_the_provider_is_split(
    chain: Chain, db_path: Path, filled: tuple[int, int]
) -> None:
    first, last = filled
    logs = orderbook_logs(chain.rpc, chain.deployment, first, last)
    await migrated_database(db_path, chain.deployment)
    proxy = await RpcProxy(chain.http_url).start()
    proxy.injections.append(
        Injection(
            "query returned more than 10000 results. Try with this block range [1, 2].", -32005
        )
    )
    try:
        async with job_service(db_path, chain.deployment, proxy.url, batch_blocks=1000) as jobs:
            final = await jobs.wait((await jobs.start(first, last))["job_id"])
    finally:
        await proxy.stop()
    assert final is not None and final["state"] == "done", final
    assert (final["events_found"], final["events_added"]) == (len(logs), len(logs))
    ranges = [call.block_range for call in proxy.get_logs_calls()]
    assert ranges[0] == (first, last) and proxy.get_logs_calls()[0].injected
    assert ranges[1] is not None and ranges[1][1] < last  # the retry asked for less


async def test_a_provider_error_fails_the_job_with_its_reason(
    chain: Chain, db_path: Path, filled: tuple[int, int]
) -> None:
    first, last = filled
    await migrated_database(db_path, chain.deployment)
    proxy = await RpcProxy(chain.http_url).start()
    proxy.injections.append(Injection("execution reverted: nope", 3))
    try:
        async with job_service(db_path, chain.deployment, proxy.url) as jobs:
            final = await jobs.wait((await jobs.start(first, last))["job_id"])
    finally:
        await proxy.stop()
    assert final is not None and final["state"] == "failed"
    assert "execution reverted: nope" in final["error"]
    assert final["finished_at"] and final["events_added"] == 0


async def test_cancel_stops_a_running_job(
    chain: Chain, db_path: Path, filled: tuple[int, int]
) -> None:
    first, last = filled
    await migrated_database(db_path, chain.deployment)
    proxy = await GatedProxy(chain.http_url).start()
    try:
        async with (
            job_service(db_path, chain.deployment, proxy.url, batch_blocks=2) as jobs,
            api_client(db_path, jobs=jobs, token=TOKEN) as client,
        ):
            proxy.gate.clear()
            answer = await client.post(
                "/api/backfill/start", json={"from": first, "to": last}, headers=bearer()
            )
            job_id = (await answer.json())["job_id"]
            await asyncio.wait_for(proxy.held.wait(), 10)
            running = await (await client.get(f"/api/backfill/status/{job_id}")).json()
            cancelled = await client.delete(f"/api/backfill/jobs/{job_id}", headers=bearer())
            body = await cancelled.json()
            proxy.gate.set()
            again = await (
                await client.delete(f"/api/backfill/jobs/{job_id}", headers=bearer())
            ).json()
            later = await jobs.wait(job_id)
    finally:
        proxy.gate.set()
        await proxy.stop()
    assert running["state"] == "running" and running["finished_at"] is None
    assert cancelled.status == 200
    assert body["state"] == "cancelled" and body["finished_at"] is not None
    assert body["blocks_done"] < body["blocks_total"]
    assert again == body == later  # a finished job stays as it is


async def test_jobs_running_at_a_stop_or_a_crash_are_interrupted(
    chain: Chain, db_path: Path, filled: tuple[int, int]
) -> None:
    first, last = filled
    await migrated_database(db_path, chain.deployment)
    proxy = await GatedProxy(chain.http_url).start()
    try:
        async with job_service(db_path, chain.deployment, proxy.url) as jobs:
            done = await jobs.wait((await jobs.start(first, last))["job_id"])
            proxy.gate.clear()
            stopped = await jobs.start(first, last)
            await asyncio.wait_for(proxy.held.wait(), 10)
        # what a SIGKILLed process leaves: a row still 'running'
        with sqlite3.connect(db_path) as admin:
            admin.execute(
                "INSERT INTO backfill_jobs (state, from_block, to_block, started_at)"
                " VALUES ('running', ?, ?, 'then')",
                (first, last),
            )
        proxy.gate.set()
        async with (
            job_service(db_path, chain.deployment, proxy.url) as jobs,
            api_client(db_path, jobs=jobs) as client,
        ):
            listed = await (await client.get("/api/backfill/jobs")).json()
    finally:
        proxy.gate.set()
        await proxy.stop()
    assert done is not None
    states = [(job["job_id"], job["state"]) for job in listed]
    assert states == [
        (done["job_id"], "done"),
        (stopped["job_id"], "interrupted"),
        (stopped["job_id"] + 1, "interrupted"),
    ]
    assert listed[0] == done
    assert all(job["finished_at"] and job["error"] for job in listed[1:])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"to": 1}, "from"),
        ({"from": 0}, "to"),
        ({"from": "1", "to": 2}, "from"),
        ({"from": 1, "to": 2.5}, "to"),
        ({"from": True, "to": 2}, "from"),
        ({"from": -1, "to": 2}, "from"),
        ({"from": 3, "to": 2}, "to"),
        ({"from": 0, "to": 10**9}, "to"),  # above the head
        ({"from": 0, "to": 1, "step": 1}, "step"),
        ([0, 1], None),
    ],
)
async def test_bad_input_is_a_4xx_naming_the_field(
    chain: Chain, db_path: Path, body: Any, field: str | None
) -> None:
    await migrated_database(db_path, chain.deployment)
    async with (
        job_service(db_path, chain.deployment, chain.http_url) as jobs,
        api_client(db_path, jobs=jobs, token=TOKEN) as client,
    ):
        answer = await client.post("/api/backfill/start", json=body, headers=bearer())
        error = (await answer.json())["error"]
        assert await jobs.all() == []
    assert answer.status == 400
    assert error["field"] == field and isinstance(error["message"], str) and error["message"]


async def test_unknown_jobs_and_bodies_that_are_not_json(chain: Chain, db_path: Path) -> None:
    await migrated_database(db_path, chain.deployment)
    async with (
        job_service(db_path, chain.deployment, chain.http_url) as jobs,
        api_client(db_path, jobs=jobs, token=TOKEN) as client,
    ):
        answers = [
            await client.get("/api/backfill/status/7"),
            await client.get("/api/backfill/status/abc"),
            await client.delete("/api/backfill/jobs/7", headers=bearer()),
            await client.delete("/api/backfill/jobs/-1", headers=bearer()),
        ]
        bodies = [await a.json() for a in answers]
        not_json = await client.post("/api/backfill/start", data=b"from=1&to=2", headers=bearer())
        not_json_body = await not_json.json()
    assert [a.status for a in answers] == [404, 404, 404, 404]
    assert all(b["error"]["field"] is None and b["error"]["message"] for b in bodies)
    assert not_json.status == 400 and not_json_body["error"]["field"] is None
