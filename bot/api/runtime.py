"""What ``bot run`` holds for the HTTP API: the job service and the routes' sources (SPEC §10).

Lifecycle, in the runner: build it before the server (it refuses, with a ConfigError, a
non-loopback ``metrics.host`` without a token: exit 3) and pass :meth:`install` to the
:class:`~bot.metrics.MetricsServer` as ``configure``; ``await open(endpoint, confirmations)`` once
the session is open (the database is migrated; until then the job routes answer 503), and
``await close()`` before the session closes (a job still running is marked ``interrupted``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

from bot.api.app import ApiSources, install_api
from bot.api.jobs import BackfillJobs, LogSource
from bot.chain.endpoint import Endpoint
from bot.config import LoadedConfig, is_loopback
from bot.core.abi import ORDERBOOK_TOPICS
from bot.ops.conditions import Alert


def alert_dicts(alerts: Iterable[Alert]) -> list[dict[str, Any]]:
    """Alerts as the page shows them (``{"kind", "message", "at"}``), e.g. for
    ``alerts=lambda: alert_dicts(sink.last_alerts(20))``."""
    return [
        {"kind": alert.kind.value, "message": alert.message, "at": alert.at.isoformat()}
        for alert in alerts
    ]


class ApiRuntime:
    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        handoff_drained: Callable[[], bool],
        chain_head: Callable[[], int | None],
        alerts: Callable[[], list[dict[str, Any]]] | None = None,
    ) -> None:
        loaded.settings.metrics.require_token_off_loopback()
        self._loaded = loaded
        self._handoff_drained = handoff_drained
        self._chain_head = chain_head
        self._alerts = alerts
        self._confirmations = 0
        self.jobs: BackfillJobs | None = None

    async def open(self, endpoint: Endpoint, confirmations: int) -> None:
        """Start the job service on the session's provider (marks jobs of a dead process)."""
        s = self._loaded.settings
        self._confirmations = confirmations
        self.jobs = await BackfillJobs.open(
            self._loaded.database_path,
            LogSource(endpoint, s.orderbook.address, ORDERBOOK_TOPICS, s.backfill.batch_blocks),
        )

    def install(self, app: web.Application) -> None:
        """The ``configure`` hook of :class:`~bot.metrics.MetricsServer`."""
        metrics = self._loaded.settings.metrics
        sources = ApiSources(
            database=self._loaded.database_path,
            confirmations=lambda: self._confirmations,
            handoff_drained=self._handoff_drained,
            chain_head=self._chain_head,
            jobs=lambda: self.jobs,
            alerts=self._alerts,
        )
        install_api(
            app, sources, token=metrics.token.get_secret_value(), loopback=is_loopback(metrics.host)
        )

    async def close(self) -> None:
        if self.jobs is not None:
            await self.jobs.close()
            self.jobs = None
