"""Run ``bot backfill`` as a new user would: a whole process on a config file, timed from the
outside, its peak RSS from its own ``VmHWM``, its phases from its own JSON log lines
(``--log-json``: exact timestamps).

Why not ``ru_maxrss`` (``os.wait4``, ``RUSAGE_CHILDREN``): Linux carries the parent's
high-water mark into the child across fork/vfork + exec, so a child of a 300 MB benchmark
process reports at least 300 MB whatever it did. ``VmHWM`` in ``/proc/PID/status`` belongs to
the exec'd image alone; it is polled every 20 ms while the child runs (it only grows, so the last
reading is the peak up to a few ms before exit).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def write_config(
    folder: Path,
    *,
    http_url: str,
    ws_url: str,
    orderbook: str,
    owner: str,
    deployment_block: int,
    db: Path,
    workers: int | None = None,
    batch_blocks: int | None = None,
) -> Path:
    """A config as a new user writes it: defaults everywhere except what the chain dictates."""
    backfill = ""
    if workers is not None or batch_blocks is not None:
        backfill = "[backfill]\n"
        backfill += f"workers = {workers}\n" if workers is not None else ""
        backfill += f"batch_blocks = {batch_blocks}\n" if batch_blocks is not None else ""
    path = folder / "bot.toml"
    path.write_text(
        f"""[chain]
ws_url = "{ws_url}"
http_url = "{http_url}"

[orderbook]
address = "{orderbook}"
deployment_block = {deployment_block}
order_owner = "{owner}"

[database]
path = "{db}"

{backfill}
[metrics]
port = 0
"""
    )
    return path


@dataclass
class BotRun:
    wall_s: float
    rss_mb: float
    summary: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)
    started_at: float = 0.0
    ended_at: float = 0.0

    def at(self, prefix: str) -> float | None:
        """Wall-clock time of the first log record whose message starts with ``prefix``."""
        for record in self.records:
            if record["message"].startswith(prefix):
                return float(record["time"])
        return None

    def phases(self) -> dict[str, float]:
        """start-up (process start → database ready), fetch+store (→ backfill done),
        drain (→ process exit): the bot's own log lines mark the boundaries."""
        ready = self.at("database ")
        done = self.at("backfill done")
        out: dict[str, float] = {}
        if ready is not None:
            out["startup_s"] = ready - self.started_at
        if ready is not None and done is not None:
            out["fetch_store_s"] = done - ready
        if done is not None:
            out["after_backfill_s"] = self.ended_at - done
        return out


def vm_hwm_mb(pid: int | str = "self") -> float | None:
    """Peak RSS (``VmHWM``) of a live process in MB, None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


class PeakWatcher(threading.Thread):
    """Polls a child's ``VmHWM`` until it exits; ``peak_mb`` is the last reading."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_mb = 0.0
        self.finished = threading.Event()

    def run(self) -> None:
        while not self.finished.is_set():
            value = vm_hwm_mb(self.pid)
            if value is not None:
                self.peak_mb = max(self.peak_mb, value)
            self.finished.wait(0.02)


def run_backfill(
    config: Path,
    *,
    profile: Path | None = None,
    wrapper: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> BotRun:
    """``python -m bot --config CONFIG --log-json backfill`` (optionally under cProfile, or
    behind a ``wrapper`` command such as ``py-spy record … --``)."""
    command = [*(wrapper or []), sys.executable]
    if profile is not None:
        command += ["-m", "cProfile", "-o", str(profile)]
    command += ["-m", "bot", "--config", str(config), "--log-json", "backfill"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    err_path = config.parent / f"bot-{time.monotonic_ns()}.stderr"
    with (
        err_path.open("w") as err,
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=ROOT
        ) as process,
    ):
        started = time.time()
        began = time.perf_counter()
        watcher = PeakWatcher(process.pid)
        watcher.start()
        assert process.stdout is not None
        out_text = process.stdout.read()  # EOF: the child closed stdout (it is exiting)
        watcher.finished.set()
        watcher.join()
        _pid, status, _usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - began
        ended = time.time()
        process.returncode = os.waitstatus_to_exitcode(status)
    records = []
    for line in err_path.read_text().splitlines():
        try:
            record = json.loads(line)["record"]
        except (ValueError, KeyError):
            continue
        records.append({"time": record["time"]["timestamp"], "message": record["message"]})
    if process.returncode != 0:
        tail = err_path.read_text()[-3000:]
        raise RuntimeError(f"bot backfill exited {process.returncode}:\n{tail}")
    # the summary is the last JSON line (a wrapper such as py-spy may print after it)
    summary = json.loads([x for x in out_text.splitlines() if x.startswith("{")][-1])
    return BotRun(wall, watcher.peak_mb, summary, records, started, ended)


def db_counts(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        out = {}
        for table in ("events", "trades", "executions"):
            out[table] = int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        out["pending"] = int(
            conn.execute("SELECT COUNT(*) FROM events WHERE status = 'pending'").fetchone()[0]
        )
        return out
    finally:
        conn.close()


def db_size_mb(db: Path) -> float:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*")) / 1e6
