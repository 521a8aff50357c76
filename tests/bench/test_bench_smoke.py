"""Smoke tests of the benchmark harness: ``python -m bench --quick --only NAME`` runs on tiny
inputs and writes its section. Nothing about speed is asserted (figures on a shared 2-core
machine mean nothing at these sizes); the figures' presence and the sections' bookkeeping are.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.report import ORDER, Row, Section, save

ROOT = Path(__file__).resolve().parents[2]
TITLES = {
    "backfill": "## Catch-up: bot backfill vs raw eth_getLogs (`backfill`)",
    "decode": "## Decoding floors: JSON and ABI (`decode`)",
    "inserts": "## Durable inserts of raw logs and reading them back (`inserts`)",
    "drain": "## Drain throughput (Engine.drain, one pass) (`drain`)",
    "memory": "## Memory and empty ranges (stub node) (`memory`)",
    "live": "## Live latency: log on the socket → hedge order sent (`live`)",
    "profile": "## Profile of a catch-up (cProfile, bot backfill of the 40k chain) (`profile`)",
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Chains built for the smoke runs, shared by this module's tests."""
    return tmp_path_factory.mktemp("bench-cache")


def run_bench(name: str, out: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-m", "bench", "--quick", "--only", name,
        "--out", str(out), "--cache", str(cache), "--no-install",
    ]  # fmt: skip
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=110, check=False
    )


@pytest.mark.parametrize("name", ORDER)
def test_quick_run_writes_its_section(name: str, tmp_path: Path, cache: Path) -> None:
    out = tmp_path / "RESULTS.md"
    done = run_bench(name, out, cache)
    assert done.returncode == 0, done.stderr[-4000:]
    text = out.read_text()
    assert TITLES[name] in text
    assert f"Reproduce: `scripts/bench --only {name} --quick`" in text
    assert "load average at start" in text
    sections = json.loads(out.with_suffix(".json").read_text())
    assert list(sections) == [name]
    rows = sections[name]["rows"]
    assert rows, "a section without figures"
    assert all(row["bot"] not in ("", "-", "failed") for row in rows), rows
    for other in set(TITLES) - {name}:
        assert TITLES[other] not in text


def test_only_replaces_one_section_and_keeps_the_others(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    save(out, [Section("drain", "Drain", [Row("a", "1 s", "2 s", "0.50×", "")])])
    save(out, [Section("decode", "Decode", [Row("b", "3 µs", "", "", "")])])
    save(out, [Section("drain", "Drain", [Row("a", "9 s", "2 s", "4.50×", "")])])
    text = out.read_text()
    assert "| decode | b | 3 µs |" in text  # kept, in the summary
    assert "| drain | a | 9 s | 2 s | 4.50× |" in text  # replaced
    assert "1 s" not in text
    assert text.index("## Decode") < text.index("## Drain")  # the benchmarks' order
