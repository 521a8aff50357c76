"""Prometheus metrics (SPEC §9) and the ``/metrics`` + ``/health`` HTTP endpoint.

Each process builds its own registry (no global state), so tests can run many bots in one
interpreter and read exact values.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web
from loguru import logger
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.backfill_duration_seconds = Histogram(
            "backfill_duration_seconds",
            "Wall time of one backfill run",
            registry=r,
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600),
        )
        self.blocks_backfilled_total = Counter(
            "blocks_backfilled_total", "Blocks whose logs the backfill stored", registry=r
        )
        self.backfill_workers = Gauge(
            "backfill_workers", "Concurrent eth_getLogs windows in flight", registry=r
        )
        self.backfill_concurrency_limit = Gauge(
            "backfill_concurrency_limit",
            "Backfill windows allowed in flight now (halved on rate limits, up to workers)",
            registry=r,
        )
        self.events_enqueued_total = Counter(
            "events_enqueued_total",
            "Orderbook logs newly written to the queue",
            ["source"],
            registry=r,
        )
        self.events_processed_total = Counter(
            "events_processed_total", "Queue events processed by the drain", registry=r
        )
        self.queue_depth = Gauge("queue_depth", "Pending events in the queue", registry=r)
        self.rpc_requests_total = Counter(
            "rpc_requests_total",
            "JSON-RPC requests by provider (a redacted URL)",
            ["method", "outcome", "provider"],
            registry=r,
        )
        self.subscription_reconnects_total = Counter(
            "subscription_reconnects_total", "WebSocket subscription reconnects", registry=r
        )
        self.head_lag_blocks = Gauge(
            "head_lag_blocks", "Blocks between the chain head and the checkpoint", registry=r
        )
        self.executions_total = Counter(
            "executions_total", "Executions that reached a status", ["status"], registry=r
        )
        self.live_log_to_trade_seconds = Histogram(
            "live_log_to_trade_seconds",
            "Delay from a live log arriving on the socket to its trade committed",
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )

    def rpc_outcome(self, provider: str, method: str, outcome: str) -> None:
        self.rpc_requests_total.labels(method=method, outcome=outcome, provider=provider).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """Serves ``/metrics`` and ``/health`` on loopback-or-any ``port`` (0 = off); ``configure``
    adds more routes and middlewares (the API and status page, SPEC §10) before it starts."""

    def __init__(
        self,
        metrics: Metrics,
        health: Callable[[], dict[str, Any]],
        *,
        host: str = "127.0.0.1",
        configure: Callable[[web.Application], None] | None = None,
    ) -> None:
        self._metrics = metrics
        self._health = health
        self._host = host
        self._configure = configure
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self, port: int) -> None:
        if port == 0:
            return
        app = web.Application()
        app.router.add_get("/metrics", self._serve_metrics)
        app.router.add_get("/health", self._serve_health)
        if self._configure is not None:
            self._configure(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            logger.warning(
                "metrics endpoint not started: port {} is not free ({}); set metrics.port",
                port,
                exc.strerror,
            )
            return
        self.port = port
        logger.info("metrics on http://{}:{}/metrics, health on /health", self._host, port)

    async def _serve_metrics(self, _request: web.Request) -> web.Response:
        response = web.Response(body=self._metrics.render())
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response

    async def _serve_health(self, _request: web.Request) -> web.Response:
        health = self._health()
        status = 200 if health.get("ok") else 503
        return web.Response(text=json.dumps(health), status=status, content_type="application/json")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
