"""Backfill progress: one log line per window, and a one-line bar on a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from loguru import logger

from bot.core.ranges import BlockRange


class Progress:
    def __init__(
        self,
        start: int,
        end: int,
        *,
        stream: TextIO | None = None,
    ) -> None:
        self.start = start
        self.end = end
        self.total = end - start + 1
        self.blocks = 0
        self.events = 0
        # (allowed, configured) backfill workers, shown once the backfill sets it: a provider
        # that rate-limits us lowers the first (AIMD, bot.core.concurrency)
        self.workers: tuple[int, int] | None = None
        self._began = time.monotonic()
        self._stream = stream if stream is not None else sys.stderr
        self._bar = self._stream.isatty()

    def line(self, window: BlockRange) -> str:
        elapsed = max(time.monotonic() - self._began, 1e-9)
        rate = self.blocks / elapsed
        left = self.total - self.blocks
        eta = f"{left / rate:,.0f} s" if rate > 0 else "?"
        percent = 100 * self.blocks // max(1, self.total)
        workers = "" if self.workers is None else f", workers {self.workers[0]}/{self.workers[1]}"
        return (
            f"blocks {window.start}-{window.end} of {self.start}-{self.end}, {percent}%, "
            f"{self.events:,} events, {rate:,.0f} blocks/s, ETA {eta}{workers}"
        )

    def window(self, window: BlockRange, events: int) -> None:
        self.blocks += window.span
        self.events += events
        text = self.line(window)
        logger.info(text)
        if self._bar:
            filled = 30 * self.blocks // max(1, self.total)
            self._stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {text}\x1b[K")
            self._stream.flush()

    def finish(self) -> None:
        if self._bar:
            self._stream.write("\n")
            self._stream.flush()
