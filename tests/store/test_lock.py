"""The instance lock: a second holder fails at once; a SIGKILLed holder frees it at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.errors import InstanceLockedError
from bot.store.lock import InstanceLock, lock_path

_HOLDER = """
import sys, time
from bot.store.lock import InstanceLock
lock = InstanceLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(120)
"""


def test_second_holder_in_process_fails_and_release_frees(db_path: Path) -> None:
    with InstanceLock(db_path) as first:
        assert first.held
        with pytest.raises(InstanceLockedError, match=f"pid {os.getpid()}"):
            InstanceLock(db_path).acquire()
    with InstanceLock(db_path) as again:
        assert again.held
    assert lock_path(db_path) == Path(f"{db_path}.lock")


def test_other_process_holds_then_dies_by_sigkill(db_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(db_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        with pytest.raises(InstanceLockedError, match=f"pid {holder.pid}"):
            InstanceLock(db_path).acquire()
        assert time.monotonic() - started < 1.0  # refused at once, never waits
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        lock = InstanceLock(db_path).acquire()  # the kernel released it with the process
        assert lock.held
        lock.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
