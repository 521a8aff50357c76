"""`bot demo --duration`: the README's first command, as a user runs it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

POSITION = re.compile(r"^\s+(\w+)\s+on-chain (\S+) \(devnet sent (\S+)\), hedged (\S+),")


def test_demo_hedges_live_and_its_final_view_adds_up(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "demo", "--dir", str(tmp_path / "devnet"),
         "--duration", "8", "--every", "2", "--fills", "20", "--rate", "4"],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "demo stopped:" in out
    final = out[out.index("demo stopped:") :]
    positions = [POSITION.match(line) for line in final.splitlines()]
    rows = [m.groups() for m in positions if m]
    assert len(rows) >= 3, final
    for ticker, onchain, sent, _hedged in rows:
        assert onchain == sent, f"{ticker}: booked {onchain}, devnet sent {sent}"
    assert "-> FILLED" in final  # hedges were placed with the dry-run broker
    assert "live: following heads" in result.stderr
    assert "placing" in result.stderr  # hedges are logged as they happen
