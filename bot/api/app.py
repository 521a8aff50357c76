"""The HTTP API and the status page on the metrics server (SPEC §10).

Routes (added to the ``/metrics`` + ``/health`` application by :func:`install_api`):

- ``GET /ready``: 200 once the hand-off is drained and the checkpoint is within
  ``live.confirmations + 2`` of the chain head, else 503 with the reason.
- ``GET /api/status``: exactly the ``bot status --json`` object (read-only snapshot).
- ``GET /api/alerts``: ``{"alerts": [{"kind", "message", "at"}, …]}``, newest first.
- ``POST /api/backfill/start`` ``{"from": N, "to": M}`` → ``{"job_id": …}``;
  ``GET /api/backfill/status/{job_id}``; ``GET /api/backfill/jobs``;
  ``DELETE /api/backfill/jobs/{job_id}`` cancels.
- ``GET /``: the status page (a static page whose script reads ``/api/status``).

Bad input answers 4xx ``{"error": {"field": …, "message": …}}`` (404 for an unknown job, field
null). Nothing here ever answers with a secret: the status object holds none (the provider URL
is stored redacted) and errors are scrubbed of provider URLs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.api.auth import auth_middleware
from bot.api.jobs import MAX_RUNNING, BackfillJobs
from bot.api.page import install_page
from bot.api.replies import json_errors, json_reply, refuse
from bot.errors import BotError
from bot.store import queries

MAX_BODY_BYTES = 4096
_JOB_FIELDS = ("from", "to")


@dataclass(frozen=True)
class ApiSources:
    """What the routes read. The callables are cheap and never block (the runner's state, read
    at each request: the server may start before the job service is open)."""

    database: Path
    confirmations: Callable[[], int]
    handoff_drained: Callable[[], bool]
    chain_head: Callable[[], int | None]
    jobs: Callable[[], BackfillJobs | None] = lambda: None
    alerts: Callable[[], list[dict[str, Any]]] | None = None


def install_api(app: web.Application, sources: ApiSources, *, token: str, loopback: bool) -> None:
    """Add the auth middleware, the API routes and the page to ``app`` (before it starts)."""
    app.middlewares.append(json_errors)
    app.middlewares.append(auth_middleware(token, loopback=loopback))
    routes = _Routes(sources)
    app.router.add_get("/ready", routes.ready)
    app.router.add_get("/api/status", routes.status)
    app.router.add_get("/api/alerts", routes.alerts)
    app.router.add_post("/api/backfill/start", routes.start_job)
    app.router.add_get("/api/backfill/status/{job_id}", routes.job)
    app.router.add_get("/api/backfill/jobs", routes.jobs)
    app.router.add_delete("/api/backfill/jobs/{job_id}", routes.cancel_job)
    install_page(app)


def _integer(body: dict[str, Any], key: str) -> int:
    if key not in body:
        raise refuse(400, key, f'"{key}" is missing: send {{"from": N, "to": M}}')
    value = body[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise refuse(400, key, f'"{key}" must be a whole block number, got {json.dumps(value)}')
    if value < 0:
        raise refuse(400, key, f'"{key}" must be >= 0, got {value}')
    return value


def _alert(item: dict[str, Any]) -> dict[str, Any]:
    """Only the three public fields: an alert's details may hold more than a page should show."""
    at = item.get("at")
    return {
        "kind": str(item.get("kind")),
        "message": str(item.get("message")),
        "at": at.isoformat() if isinstance(at, datetime) else at,
    }


class _Routes:
    def __init__(self, sources: ApiSources) -> None:
        self._sources = sources

    async def _status(self) -> dict[str, Any]:
        # sqlite3 in a thread: a busy database waits there, never on the event loop
        try:
            return await asyncio.to_thread(
                queries.status, self._sources.database, confirmations=self._sources.confirmations()
            )
        except (BotError, OSError) as exc:
            raise refuse(503, None, f"the status cannot be read: {exc}") from None

    async def status(self, _request: web.Request) -> web.Response:
        return json_reply(await self._status())

    async def ready(self, _request: web.Request) -> web.Response:
        reason = await self._not_ready()
        if reason is not None:
            return json_reply({"ready": False, "reason": reason}, 503)
        return json_reply({"ready": True, "reason": None})

    async def _not_ready(self) -> str | None:
        if not self._sources.handoff_drained():
            return "starting: the backfill hand-off is not drained yet"
        report = await self._status()
        checkpoint = report["checkpoint_block"]
        head = self._sources.chain_head()
        head = report["head_block"] if head is None else head
        if checkpoint is None or head is None:
            return "no checkpoint or chain head yet"
        allowed = self._sources.confirmations() + 2
        if head - checkpoint > allowed:
            return (
                f"behind: checkpoint {checkpoint} is {head - checkpoint} blocks behind head "
                f"{head} (allowed {allowed})"
            )
        return None

    async def alerts(self, _request: web.Request) -> web.Response:
        source = self._sources.alerts
        items = [] if source is None else source()
        return json_reply({"alerts": [_alert(item) for item in items]})

    def _jobs(self) -> BackfillJobs:
        jobs = self._sources.jobs()
        if jobs is None:
            raise refuse(503, None, "backfill jobs are not available yet (the bot is starting)")
        return jobs

    async def start_job(self, request: web.Request) -> web.Response:
        jobs = self._jobs()
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise refuse(400, None, f"the body is larger than {MAX_BODY_BYTES} bytes")
        try:
            body = json.loads(await request.text())
        except (ValueError, UnicodeDecodeError):
            raise refuse(400, None, 'the body must be JSON: {"from": N, "to": M}') from None
        if not isinstance(body, dict):
            raise refuse(400, None, 'the body must be a JSON object: {"from": N, "to": M}')
        for key in body:
            if key not in _JOB_FIELDS:
                raise refuse(400, str(key), f'unknown field "{key}": send {{"from": N, "to": M}}')
        first, last = _integer(body, "from"), _integer(body, "to")
        if last < first:
            raise refuse(400, "to", f'"to" ({last}) is below "from" ({first})')
        try:
            head = await jobs.head()
        except BotError as exc:
            raise refuse(503, None, f"the chain head cannot be read: {exc}") from None
        if last > head:
            raise refuse(400, "to", f'"to" ({last}) is above the chain head ({head})')
        if jobs.running() >= MAX_RUNNING:
            raise refuse(409, None, f"{MAX_RUNNING} jobs are running: wait or cancel one")
        status = await jobs.start(first, last)
        return json_reply({"job_id": status["job_id"]})

    def _job_id(self, request: web.Request) -> int:
        text = request.match_info["job_id"]
        if not text.isdecimal() or len(text) > 18:
            raise refuse(404, None, f"no backfill job {text!r}")
        return int(text)

    async def job(self, request: web.Request) -> web.Response:
        job_id = self._job_id(request)
        status = await self._jobs().get(job_id)
        if status is None:
            raise refuse(404, None, f"no backfill job {job_id}")
        return json_reply(status)

    async def jobs(self, _request: web.Request) -> web.Response:
        return json_reply(await self._jobs().all())

    async def cancel_job(self, request: web.Request) -> web.Response:
        job_id = self._job_id(request)
        status = await self._jobs().cancel(job_id)
        if status is None:
            raise refuse(404, None, f"no backfill job {job_id}")
        return json_reply(status)
