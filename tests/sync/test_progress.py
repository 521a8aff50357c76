"""Backfill progress: the SPEC line per window, and a bar only on a terminal."""

from __future__ import annotations

import io
import re

from bot.core.ranges import BlockRange
from bot.sync.progress import Progress

LINE = re.compile(
    r"^blocks (\d+)-(\d+) of 0-4999, (\d+)%, ([\d,]+) events, ([\d,]+) blocks/s, ETA (\S+) s$"
)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_line_per_window_has_the_spec_fields() -> None:
    progress = Progress(0, 4999, stream=io.StringIO())
    progress.window(BlockRange(0, 999), 1234)
    line = progress.line(BlockRange(0, 999))
    match = LINE.match(line)
    assert match, line
    assert match.group(1, 2, 3, 4) == ("0", "999", "20", "1,234")


def test_bar_is_drawn_on_a_terminal_and_ends_with_a_newline() -> None:
    terminal = Terminal()
    progress = Progress(0, 4999, stream=terminal)
    progress.window(BlockRange(0, 2499), 10)
    assert terminal.getvalue().startswith("\r[" + "#" * 15 + "." * 15 + "] blocks 0-2499")
    progress.window(BlockRange(2500, 4999), 5)
    progress.finish()
    assert "[" + "#" * 30 + "]" in terminal.getvalue()
    assert terminal.getvalue().endswith("\n")


def test_no_bar_when_not_a_terminal() -> None:
    plain = io.StringIO()
    progress = Progress(0, 4999, stream=plain)
    progress.window(BlockRange(0, 999), 1)
    progress.finish()
    assert plain.getvalue() == ""
