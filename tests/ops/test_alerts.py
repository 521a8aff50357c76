"""AlertSink against a real local HTTP receiver: the JSON shape, de-duplication, retries, a hanging
or refusing webhook, the queue bound, and the webhook token kept out of the logs."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from loguru import logger

from bot.ops.alerts import AlertSink, redact_webhook
from bot.ops.conditions import Alert, AlertKind, Conditions

TOKEN = "s3cr3t-hook-token-9f2c"
T0 = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)


class Receiver:
    """A webhook that answers from a script: a status code, "drop" (close the connection without
    an answer) or "hang" (never answer); 200 once the script is used up."""

    def __init__(self) -> None:
        self.script: list[int | str] = []
        self.attempts = 0
        self.accepted: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.attempts += 1
        self.paths.append(request.path_qs)
        body = await request.json()
        answer = self.script.pop(0) if self.script else 200
        if answer == "drop":
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)
        if answer == "hang":
            await self.release.wait()
            return web.Response(status=503)
        assert isinstance(answer, int)
        if answer == 200:
            self.accepted.append(body)
        return web.json_response({}, status=answer)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    hook = Receiver()
    app = web.Application()
    app.router.add_post("/hooks/{token}", hook.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield hook, f"http://127.0.0.1:{port}/hooks/{TOKEN}?key={TOKEN}"
    finally:
        hook.release.set()
        await runner.cleanup()


async def until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait for an observable condition, failing after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def fast_sink(url: str, **options: Any) -> AlertSink:
    settings: dict[str, Any] = {"timeout_s": 2.0, "base_backoff_s": 0.01, "max_backoff_s": 0.05}
    settings.update(options)
    return AlertSink(url, **settings)


def parked(ticker: str, at: datetime = T0) -> Alert:
    return Alert(
        AlertKind.PARKED, f"{ticker} parked after 3 rejections", at, ticker, {"ticker": ticker}
    )


async def test_alerts_are_posted_as_one_json_object_with_the_exact_shape(
    receiver: tuple[Receiver, str],
) -> None:
    hook, url = receiver
    sink = fast_sink(url)
    await sink.start()
    try:
        sink.emit(
            Alert(
                AlertKind.UNHEDGED_TOO_LONG,
                "AAPL unhedged -1.5 shares for 11 min",
                T0 + timedelta(microseconds=250),
                "AAPL",
                {"ticker": "AAPL", "unhedged_shares": "-1.5", "execution_id": 7},
            )
        )
        await until(lambda: sink.sent == 1)
    finally:
        await sink.aclose()
    assert hook.accepted == [
        {
            "kind": "unhedged_too_long",
            "message": "AAPL unhedged -1.5 shares for 11 min",
            "at": "2026-12-01T22:00:00.000250+00:00",
            "ticker": "AAPL",
            "unhedged_shares": "-1.5",
            "execution_id": 7,
        }
    ]
    assert hook.attempts == 1 and sink.failed == 0


async def test_repeats_are_sent_once_until_cleared_then_the_cleared_alert(
    receiver: tuple[Receiver, str],
) -> None:
    hook, url = receiver
    sink = fast_sink(url)
    conditions = Conditions()
    await sink.start()
    try:
        for minute in range(5):  # the run loop sees "paused" on five ticks
            now = T0 + timedelta(minutes=minute)
            sink.emit_all(conditions.observe(AlertKind.PAUSED, "", True, "executions paused", now))
        sink.emit_all(
            conditions.observe(AlertKind.PAUSED, "", False, "resumed", T0 + timedelta(minutes=6))
        )
        sink.emit_all(
            conditions.observe(AlertKind.PAUSED, "", False, "", T0 + timedelta(minutes=7))
        )
        sink.emit_all(
            conditions.observe(
                AlertKind.PAUSED, "", True, "paused again", T0 + timedelta(minutes=8)
            )
        )
        await until(lambda: sink.sent == 3)
        assert await sink.flush(5.0)
    finally:
        await sink.aclose()
    assert [(a["kind"], a["message"]) for a in hook.accepted] == [
        ("paused", "executions paused"),
        ("paused_cleared", "resumed"),
        ("paused", "paused again"),
    ]
    assert hook.attempts == 3


async def test_500s_and_a_dropped_connection_are_retried_until_accepted(
    receiver: tuple[Receiver, str],
) -> None:
    hook, url = receiver
    hook.script = [500, "drop", 503, 429]
    sink = fast_sink(url, max_tries=5)
    await sink.start()
    try:
        sink.emit(parked("TSLA"))
        await until(lambda: sink.sent == 1)
    finally:
        await sink.aclose()
    assert hook.attempts == 5  # four failures, then the fifth try is accepted
    assert [a["ticker"] for a in hook.accepted] == ["TSLA"]
    assert sink.failed == 0


async def test_a_timeout_is_retried(receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    hook.script = ["hang"]
    sink = fast_sink(url, timeout_s=0.3)
    await sink.start()
    try:
        sink.emit(parked("AAPL"))
        await until(lambda: sink.sent == 1)
    finally:
        await sink.aclose()
    assert hook.attempts == 2 and [a["ticker"] for a in hook.accepted] == ["AAPL"]


async def test_a_webhook_that_keeps_failing_is_given_up_after_max_tries(
    receiver: tuple[Receiver, str],
) -> None:
    hook, url = receiver
    hook.script = [500] * 10
    sink = fast_sink(url, max_tries=3)
    await sink.start()
    try:
        sink.emit(parked("TSLA"))
        sink.emit(parked("NVDA"))  # the next alert still goes out after one is given up
        await until(lambda: sink.sent + sink.failed == 2)
    finally:
        await sink.aclose()
    assert hook.attempts == 3 + 3
    assert sink.sent == 0 and sink.failed == 2


async def test_a_400_is_not_retried(receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    hook.script = [400]
    sink = fast_sink(url, max_tries=5)
    await sink.start()
    try:
        sink.emit(parked("AAPL"))
        sink.emit(parked("MSFT"))
        await until(lambda: sink.sent + sink.failed == 2)
    finally:
        await sink.aclose()
    assert hook.attempts == 2  # one refused, one accepted: the refused one was not sent again
    assert sink.failed == 1 and sink.sent == 1
    assert [a["ticker"] for a in hook.accepted] == ["MSFT"]


async def test_a_hanging_webhook_does_not_slow_emit(receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    hook.script = ["hang"] * 200
    sink = fast_sink(url, timeout_s=30.0)
    await sink.start()
    try:
        sink.emit(parked("FIRST"))
        await until(lambda: hook.attempts == 1)  # the delivery task is stuck in the hung request
        started = time.perf_counter()
        for number in range(100):
            sink.emit(parked(f"T{number}"))
        elapsed = time.perf_counter() - started
        assert sink.pending == 100  # all queued behind the hung request, none lost
        assert hook.attempts == 1 and sink.sent == 0
        assert elapsed < 0.5, f"100 emits took {elapsed:.3f}s"
    finally:
        closing = time.perf_counter()
        await sink.aclose(grace_s=0.2)  # shutdown is not held up by the hung webhook either
        assert time.perf_counter() - closing < 5.0
    assert sink.sent == 0


async def test_a_full_queue_drops_the_oldest(receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    hook.script = ["hang"]
    sink = fast_sink(url, timeout_s=30.0, max_queue=3)
    await sink.start()
    try:
        sink.emit(parked("STUCK"))
        await until(lambda: hook.attempts == 1)
        for ticker in ("A", "B", "C", "D", "E"):
            sink.emit(parked(ticker))
        assert sink.dropped == 2 and sink.pending == 3
        hook.release.set()  # the hung request ends (503) and is retried, then the rest go out
        await until(lambda: sink.sent == 4)
    finally:
        await sink.aclose()
    assert [a["ticker"] for a in hook.accepted] == ["STUCK", "C", "D", "E"]
    assert [a.key for a in sink.last_alerts(3)] == ["E", "D", "C"]  # history keeps them all
    assert len(sink.last_alerts(100)) == 6


async def test_alerts_are_logged_with_or_without_a_webhook() -> None:
    records: list[tuple[str, str]] = []
    handle = logger.add(
        lambda m: records.append((m.record["level"].name, m.record["message"])), level="DEBUG"
    )
    sink = AlertSink("")
    try:
        await sink.start()  # nothing to start
        sink.emit(parked("AAPL"))
        sink.emit(Alert(AlertKind.PARKED_CLEARED, "AAPL unparked", T0, "AAPL"))
    finally:
        logger.remove(handle)
        await sink.aclose()
    assert records == [
        ("WARNING", "alert parked: AAPL parked after 3 rejections"),
        ("INFO", "alert parked_cleared: AAPL unparked"),
    ]
    assert sink.pending == 0 and sink.sent == 0
    assert [a.kind for a in sink.last_alerts()] == [AlertKind.PARKED_CLEARED, AlertKind.PARKED]


async def test_the_webhook_token_never_appears_in_the_logs(
    receiver: tuple[Receiver, str], unused_tcp_port: int
) -> None:
    hook, url = receiver
    hook.script = [500, "drop", 400, 302]
    lines: list[str] = []
    handle = logger.add(lines.append, level="DEBUG", format="{level} {message} {extra}")
    dead = f"http://127.0.0.1:{unused_tcp_port}/hooks/{TOKEN}"  # nothing listens: refused
    sinks = [fast_sink(url, max_tries=3), fast_sink(dead, max_tries=2, max_queue=1)]
    try:
        for sink in sinks:
            await sink.start()
            for ticker in ("A", "B", "C"):
                sink.emit(parked(ticker))
        await until(lambda: all(s.sent + s.failed + s.dropped == 3 for s in sinks))
    finally:
        for sink in sinks:
            await sink.aclose()
        logger.remove(handle)
    assert sinks[1].failed >= 1 and sinks[1].dropped >= 1  # refused, retried, given up, dropped
    assert sinks[0].failed == 2  # A: 500, dropped, then a final 400; B: a redirect, final
    assert sinks[0].sent == 1  # C accepted
    assert any("not delivered" in line for line in lines)
    assert any("HTTP 400" in line for line in lines)
    assert any("<redacted>" in line for line in lines)
    for line in lines:
        assert TOKEN not in line, line
    assert hook.paths[0] == f"/hooks/{TOKEN}?key={TOKEN}"  # the real URL was used on the wire
    assert TOKEN not in sinks[0].webhook and TOKEN not in repr(sinks[0].__dict__.get("_shown_url"))


def test_redact_webhook() -> None:
    assert redact_webhook("") == ""
    assert redact_webhook("https://hooks.slack.com/services/T0/B0/XYZ") == (
        "https://hooks.slack.com/<redacted>"
    )
    assert redact_webhook("https://h.example:8443?token=abc") == "https://h.example:8443/<redacted>"
    assert redact_webhook("https://user:pw@h.example/") == "https://h.example/<redacted>"
    assert redact_webhook("https://h.example") == "https://h.example"
    assert redact_webhook("not a url with secret") == "<redacted>"


def test_bad_sink_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        AlertSink("http://127.0.0.1:1/x", max_tries=0)
    with pytest.raises(ValueError):
        AlertSink("http://127.0.0.1:1/x", max_queue=0)


def test_payload_is_plain_json() -> None:
    alert = parked("AAPL")
    assert json.loads(json.dumps(alert.payload()))["ticker"] == "AAPL"
