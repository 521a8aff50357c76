"""RESULTS.md: one section per benchmark, a summary table on top, the machine it ran on.

Each benchmark returns a :class:`Section` (its figures as rows plus free markdown). Sections are
kept in ``results.json`` next to the markdown so that ``--only NAME`` replaces one section and
keeps the others; the markdown is always rewritten whole from that file.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ORDER = ("backfill", "decode", "inserts", "drain", "memory", "live", "profile")


@dataclass
class Row:
    """One figure: the bot's value next to its reference, and the goal it is judged against."""

    what: str
    bot: str
    reference: str = ""
    ratio: str = ""
    goal: str = ""


@dataclass
class Section:
    name: str
    title: str
    rows: list[Row] = field(default_factory=list)
    body: str = ""  # markdown after the table: method, per-run figures, notes
    machine: dict[str, str] = field(default_factory=dict)
    when: str = ""
    options: str = ""


def machine() -> dict[str, str]:
    """nproc, CPU model, Python, load average now (the machine is shared: say how busy it was)."""
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        anvil = (
            subprocess.run(
                ["node_modules/.bin/anvil", "--version"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            .stdout.strip()
            .splitlines()[0]
        )
    except (OSError, subprocess.SubprocessError, IndexError):
        anvil = "?"
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "anvil": anvil,
        "load average (1/5/15 min) at start": load,
    }


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b else "-"


def _table(rows: list[Row], with_section: list[str] | None = None) -> str:
    head = ["what", "bot", "reference", "ratio", "goal"]
    if with_section is not None:
        head = ["benchmark", *head]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for index, row in enumerate(rows):
        cells = [row.what, row.bot, row.reference, row.ratio, row.goal]
        if with_section is not None:
            cells = [with_section[index], *cells]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def load_sections(json_path: Path) -> dict[str, Section]:
    if not json_path.exists():
        return {}
    data = json.loads(json_path.read_text())
    sections = {}
    for name, raw in data.items():
        rows = [Row(**r) for r in raw.pop("rows")]
        sections[name] = Section(rows=rows, **raw)
    return sections


def save(out: Path, new: list[Section]) -> None:
    """Merge ``new`` into the sections kept beside ``out`` and rewrite ``out`` whole."""
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path = out.with_suffix(".json")
    sections = load_sections(json_path)
    for section in new:
        sections[section.name] = section
    ordered = sorted(
        sections.values(), key=lambda s: ORDER.index(s.name) if s.name in ORDER else 99
    )
    json_path.write_text(json.dumps({s.name: asdict(s) for s in ordered}, indent=1) + "\n")
    findings = out.parent / "FINDINGS.md"  # hand-written reading of the figures, if any
    extra = findings.read_text() if findings.exists() else ""
    out.write_text(render(ordered, extra))


def render(sections: list[Section], findings: str = "") -> str:
    parts = [
        "# Benchmark results",
        "",
        "Written by `scripts/bench` (`python -m bench`); do not edit by hand. Every figure is the "
        "median of the runs stated in its section, the bot and its reference measured side by "
        "side in the same run. Reproduce one section with `scripts/bench --only NAME`.",
        "",
        "**Load caveat**: this machine has 2 cores shared with other agents' builds and tests; "
        "each section gives the load average when it started. Ratios taken in one run are "
        "more trustworthy than absolute figures. **ratio** = the bot's time / the "
        "reference's time for the same work (lower is better; 1× = as fast as the reference).",
        "",
        "## Summary",
        "",
    ]
    rows: list[Row] = []
    names: list[str] = []
    for section in sections:
        if section.name == "profile":
            continue
        rows.extend(section.rows)
        names.extend([section.name] * len(section.rows))
    parts += [_table(rows, names), ""]
    for section in sections:
        parts += [f"## {section.title} (`{section.name}`)", ""]
        parts.append(f"Reproduce: `scripts/bench --only {section.name}{section.options}`  ")
        m = section.machine
        parts.append(
            f"Taken {section.when} on {m.get('nproc', '?')} × {m.get('cpu', '?')}, Python "
            f"{m.get('python', '?')}, {m.get('anvil', '?')}; load average at start "
            f"{m.get('load average (1/5/15 min) at start', '?')}."
        )
        parts.append("")
        if section.rows:
            parts += [_table(section.rows), ""]
        if section.body:
            parts += [section.body.rstrip(), ""]
    if findings:
        parts += [findings.rstrip(), ""]
    return "\n".join(parts)


def stamp(section: Section, options: str) -> Section:
    section.machine = machine()
    section.when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    section.options = options
    return section


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
