"""Drive a real ``bot run`` process against a real chain, and wait on what it does.

Waits poll an observable condition (the database, the log file) with a deadline; nothing sleeps
as synchronisation.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from bot.devnet.deploy import Deployment
from bot.store import queries

T = TypeVar("T")
POLL_S = 0.02


def wait_for(
    condition: Callable[[], T | bool | None],
    *,
    timeout_s: float,
    what: str,
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() > deadline:
            detail = on_timeout() if on_timeout else ""
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}\n{detail}")
        time.sleep(POLL_S)


def write_config(
    path: Path,
    deployment: Deployment,
    *,
    ws_url: str,
    http_url: str = "",
    database: Path,
    confirmations: int | None = 0,
    workers: int = 4,
    batch_blocks: int = 1000,
    first_event_timeout_s: float = 2,
    stale_after_s: float = 60,
    extra: str = "",
) -> Path:
    confirmations_line = "" if confirmations is None else f"confirmations = {confirmations}"
    path.write_text(
        f"""
[chain]
ws_url = "{ws_url}"
http_url = "{http_url}"

[orderbook]
address = "{deployment.orderbook}"
deployment_block = {deployment.deployment_block}
order_owner = "{deployment.order_owner}"

[database]
path = "{database}"

[backfill]
workers = {workers}
batch_blocks = {batch_blocks}

[live]
first_event_timeout_s = {first_event_timeout_s}
stale_after_s = {stale_after_s}
{confirmations_line}

[metrics]
port = 0
{extra}
"""
    )
    return path


class BotProcess:
    """``python -m bot --config CONFIG run`` with its stderr (JSON log lines) in a file."""

    def __init__(self, config: Path, *, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.log_path = config.with_suffix(f".{int(time.monotonic() * 1000)}.log")
        self._env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    def start(self, *args: str) -> BotProcess:
        self._log_file = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot", "--config", str(self.config), "--log-json", *args]
            if args
            else [sys.executable, "-m", "bot", "--config", str(self.config), "--log-json", "run"],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=self._env,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def messages(self) -> list[str]:
        """The log messages so far (JSON lines; other lines as they are)."""
        if not self.log_path.exists():
            return []
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                found.append(str(json.loads(line)["record"]["message"]))
            except (ValueError, KeyError, TypeError):
                found.append(line)
        return found

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.messages()[-lines:])

    def wait_for_log(self, text: str, *, timeout_s: float = 30) -> str:
        def seen() -> str | None:
            if not self.running() and self.process is not None:
                raise AssertionError(
                    f"bot exited ({self.process.returncode}) before logging {text!r}:\n"
                    + self.log_tail()
                )
            return next((m for m in self.messages() if text in m), None)

        return wait_for(seen, timeout_s=timeout_s, what=f"log {text!r}", on_timeout=self.log_tail)

    def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM and wait: the bot must exit by itself."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout_s)
        self._close()
        return code

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self._close()

    def _close(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def status(database: Path) -> dict[str, Any] | None:
    """``bot status --json`` read in-process (read-only, no lock); None before the DB exists."""
    if not database.exists():
        return None
    try:
        return queries.status(database, confirmations=0)
    except Exception:  # the database is still being created and migrated
        return None


def wait_caught_up(
    database: Path, block: int, *, timeout_s: float = 60, bot: BotProcess | None = None
) -> dict[str, Any]:
    """Wait until the checkpoint reached ``block`` and nothing is pending or in flight."""

    def done() -> dict[str, Any] | None:
        if bot is not None and not bot.running():
            raise AssertionError("bot exited while we waited:\n" + bot.log_tail())
        report = status(database)
        if report is None or report["checkpoint_block"] is None:
            return None
        if report["checkpoint_block"] < block or report["queue"]["pending"]:
            return None
        if any(e["status"] in ("PENDING", "SUBMITTED") for e in report["executions"]):
            return None
        return report

    return wait_for(
        done,
        timeout_s=timeout_s,
        what=f"checkpoint >= {block} with an empty queue",
        on_timeout=(bot.log_tail if bot else None),
    )


def bot_backfill(
    config: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[dict[str, Any], str]:
    """Run ``bot backfill`` to its end (exit 0 asserted): its JSON summary and its log."""
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config), "backfill", *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    summary: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return summary, result.stderr
