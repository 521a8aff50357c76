"""Headless Debian ``chromium`` for the page tests: the DOM after the page's script ran, a
screenshot, and what the positions table shows.

The browser is required, never skipped: a missing one fails with the command that installs it.
"""

from __future__ import annotations

import shutil
import subprocess
from decimal import ROUND_HALF_UP, Decimal
from html.parser import HTMLParser
from pathlib import Path

import pytest

from bot.core import amounts

INSTALL = "apt-get update && apt-get install -y chromium"


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(
            f"Debian's chromium is not installed: run `{INSTALL}` (as root; .ci/run does it). "
            "The status page's browser test needs a real browser."
        )
    return path


def _run(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            chromium(),
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def dump_dom(url: str, profile: Path) -> str:
    """The page's DOM once its script has run (virtual time lets the fetches finish)."""
    result = _run(profile, "--virtual-time-budget=5000", "--dump-dom", url)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def screenshot(url: str, profile: Path, target: Path, *, size: str = "1200,900") -> None:
    result = _run(
        profile,
        "--virtual-time-budget=5000",
        "--hide-scrollbars",
        f"--window-size={size}",
        f"--screenshot={target}",
        url,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def shown_shares(text: str | None) -> str:
    """How the page shows an amount of shares: 4 decimals, halves away from zero, no trailing
    zeros (the page's own rounding, done again with Decimal)."""
    if text is None:
        return "–"
    rounded = Decimal(text).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
    return amounts.to_text(rounded)


class _Tables(HTMLParser):
    """Rows of ``<table id=…>`` bodies as ``{data-field: text}`` dicts, plus texts by id."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[dict[str, str]]] = {}
        self.texts: dict[str, str] = {}
        self._table: str | None = None
        self._in_body = False
        self._field: str | None = None
        self._id: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "table" and found.get("id"):
            self._table = found["id"]
            self.tables[str(self._table)] = []
        elif tag == "tbody" and self._table:
            self._in_body = True
        elif tag == "tr" and self._in_body and self._table:
            self.tables[self._table].append({})
        elif tag == "td" and self._in_body and found.get("data-field"):
            self._field = found["data-field"]
        if found.get("id") and tag in ("dd", "span"):
            self._id = found["id"]
            self.texts[str(self._id)] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._field = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._table = None
        elif tag in ("dd", "span"):
            self._id = None

    def handle_data(self, data: str) -> None:
        if self._field is not None and self._table is not None:
            row = self.tables[self._table][-1]
            row[self._field] = row.get(self._field, "") + data
        if self._id is not None:
            self.texts[self._id] += data


def read_page(dom: str) -> _Tables:
    parser = _Tables()
    parser.feed(dom)
    return parser
