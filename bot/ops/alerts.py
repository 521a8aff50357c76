"""Alert delivery: every alert is logged, and POSTed to ``alerts.webhook_url`` when one is set.

Rules (SPEC §10):
- ``emit`` never waits for the network: it logs the alert (WARNING for a condition, INFO for its
  clearing), keeps it for ``last_alerts`` and puts it on a bounded queue; when the queue is full
  the oldest waiting alert is dropped and counted: a dead or slow webhook never slows the bot.
- A background task POSTs each alert as one JSON object, in order, retrying with jittered
  exponential backoff on connection errors, timeouts, 5xx and 429 (honouring ``Retry-After``) up to
  ``max_tries`` attempts; any other non-2xx answer is final (retrying a 400 cannot help). Redirects
  are not followed: the body would go to a host nobody configured.
- The webhook URL often embeds a token: it is logged only redacted, and error texts are scrubbed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from urllib.parse import urlsplit

import aiohttp
from loguru import logger

from bot.core.retry import delay_s
from bot.ops.conditions import Alert

HISTORY = 100
"""How many recent alerts ``last_alerts`` can return."""


def redact_webhook(url: str) -> str:
    """``scheme://host[:port]`` plus ``/<redacted>`` when anything (path, query, user) followed."""
    if not url:
        return url
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return "<redacted>"
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    hidden = parts.path.strip("/") or parts.query or parts.fragment or parts.username
    return f"{parts.scheme}://{host}{'/<redacted>' if hidden else ''}"


class AlertSink:
    """Logs alerts and delivers them to a webhook in the background.

    Lifecycle: ``await sink.start()`` inside the running loop, ``sink.emit(alert)`` from anywhere in
    that loop (synchronous, returns at once), ``await sink.aclose()`` on shutdown (gives pending
    deliveries a short grace, then stops). With ``webhook_url=""`` alerts are only logged.
    """

    def __init__(
        self,
        webhook_url: str,
        *,
        timeout_s: float = 5.0,
        max_tries: int = 5,
        base_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        max_queue: int = 1000,
    ) -> None:
        if max_tries < 1 or max_queue < 1:
            raise ValueError("max_tries and max_queue must be at least 1")
        self._url = webhook_url
        self._shown_url = redact_webhook(webhook_url)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_tries = max_tries
        self._base_backoff_s = base_backoff_s
        self._max_backoff_s = max_backoff_s
        self._queue: asyncio.Queue[Alert] = asyncio.Queue(maxsize=max_queue)
        self._history: deque[Alert] = deque(maxlen=HISTORY)
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    @property
    def webhook(self) -> str:
        """The webhook URL, redacted (safe to show)."""
        return self._shown_url

    @property
    def pending(self) -> int:
        """Alerts waiting for delivery (not counting one being sent)."""
        return self._queue.qsize()

    def emit(self, alert: Alert) -> None:
        """Log ``alert``, remember it, and queue it for the webhook; never blocks."""
        level = "INFO" if alert.is_cleared else "WARNING"
        logger.log(level, "alert {}: {}", alert.kind.value, alert.message)
        self._history.append(alert)
        if not self._url:
            return
        if self._queue.full():
            # The oldest undelivered alert is the least useful one to keep when the hook is down.
            self._queue.get_nowait()
            self._queue.task_done()
            self.dropped += 1
            logger.warning(
                "alert queue full ({} waiting for {}): dropped the oldest ({} dropped so far)",
                self._queue.maxsize,
                self._shown_url,
                self.dropped,
            )
        self._queue.put_nowait(alert)

    def emit_all(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            self.emit(alert)

    def last_alerts(self, n: int = 20) -> list[Alert]:
        """The ``n`` most recent alerts emitted, newest first (delivered or not)."""
        if n <= 0:
            return []
        return list(reversed(self._history))[:n]

    async def start(self) -> None:
        """Start the delivery task (no-op without a webhook, or when already started)."""
        if not self._url or self._task is not None:
            return
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        self._task = asyncio.create_task(self.run(), name="alert-webhook")

    async def run(self) -> None:
        """Deliver queued alerts one at a time, in order, until cancelled."""
        while True:
            alert = await self._queue.get()
            try:
                await self._deliver(alert)
            except Exception as exc:  # one bad delivery must not end alerting for good
                self.failed += 1
                logger.error(
                    "alert {} not delivered: {}: {}",
                    _label(alert),
                    type(exc).__name__,
                    self._scrub(str(exc)),
                )
            finally:
                self._queue.task_done()

    async def flush(self, timeout_s: float) -> bool:
        """Wait until every queued alert was delivered or given up on; False on timeout."""
        try:
            await asyncio.wait_for(self._queue.join(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def aclose(self, grace_s: float = 2.0) -> None:
        """Give pending deliveries ``grace_s`` seconds, then stop the task and close the session."""
        if self._task is not None:
            if not self._task.done() and not await self.flush(grace_s):
                logger.warning(
                    "alerts: {} undelivered to {} at shutdown", self.pending, self._shown_url
                )
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _deliver(self, alert: Alert) -> None:
        assert self._session is not None, "start() creates the session"
        body = json.dumps(alert.payload())
        headers = {"Content-Type": "application/json"}
        for attempt in range(1, self._max_tries + 1):
            retry_after: float | None = None
            try:
                async with self._session.post(
                    self._url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    status = response.status
                    if 200 <= status < 300:
                        self.sent += 1
                        return
                    if status != 429 and status < 500:
                        self.failed += 1
                        logger.error(
                            "alert {} refused by {} with HTTP {} (not retried)",
                            _label(alert),
                            self._shown_url,
                            status,
                        )
                        return
                    retry_after = _retry_after_s(response.headers.get("Retry-After"))
                    problem = f"HTTP {status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = f"{type(exc).__name__}: {self._scrub(str(exc))}".rstrip(": ")
            if attempt == self._max_tries:
                break
            wait_s = delay_s(
                attempt,
                base_s=self._base_backoff_s,
                max_s=self._max_backoff_s,
                retry_after_s=retry_after,
            )
            logger.debug(
                "alert {} to {}: {} (attempt {}/{}), retrying in {:.2f}s",
                _label(alert),
                self._shown_url,
                problem,
                attempt,
                self._max_tries,
                wait_s,
            )
            await asyncio.sleep(wait_s)
        self.failed += 1
        logger.error(
            "alert {} not delivered to {} after {} tries: {}",
            _label(alert),
            self._shown_url,
            self._max_tries,
            problem,
        )

    def _scrub(self, text: str) -> str:
        """Error texts may quote the URL (aiohttp's InvalidURL does): replace it and its path."""
        text = text.replace(self._url, self._shown_url)
        parts = urlsplit(self._url)
        for secret in (parts.path, parts.query, parts.username, parts.password):
            if secret and secret != "/":
                text = text.replace(secret, "<redacted>")
        return text


def _label(alert: Alert) -> str:
    return f"{alert.kind.value}[{alert.key}]" if alert.key else alert.kind.value


def _retry_after_s(value: str | None) -> float | None:
    """A ``Retry-After`` in seconds (the HTTP-date form is ignored: backoff applies)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
