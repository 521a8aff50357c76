"""The instance lock (SPEC §8): ``flock`` on ``<database>.lock``, released by the kernel."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from bot.errors import InstanceLockedError


def lock_path(db_path: str | Path) -> Path:
    return Path(f"{db_path}.lock")


class InstanceLock:
    """Exclusive, non-blocking lock held for the lifetime of a draining process.

    Use as a context manager or call :meth:`acquire` / :meth:`release`. A second holder raises
    :class:`InstanceLockedError` at once. The file keeps the holder's pid for the message only;
    the lock itself is the ``flock``, so a stale file after a crash never blocks a restart.
    """

    def __init__(self, db_path: str | Path) -> None:
        self.path = lock_path(db_path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> InstanceLock:
        if self._fd is not None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise InstanceLockedError(
                f"another bot process (pid {holder}) holds {self.path}; only one may write the "
                "database"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> InstanceLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
