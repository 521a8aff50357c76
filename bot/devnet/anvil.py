"""Locate and run the pinned anvil binary (npm ``@foundry-rs/anvil``) on a free port."""

from __future__ import annotations

import os
import re
import subprocess
import threading
from pathlib import Path
from types import TracebackType
from typing import IO

from bot.errors import AnvilNotFoundError, DevnetError

ANVIL_ENV = "BOT_ANVIL_BIN"
ANVIL_RELATIVE = Path("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
CHAIN_ID = 31337
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
_LISTENING = re.compile(r"Listening on (?P<host>[0-9.]+):(?P<port>\d+)")


def find_anvil(start_dirs: list[Path] | None = None) -> Path:
    """The anvil binary: ``$BOT_ANVIL_BIN`` if set, else ``node_modules/...`` searched upward.

    The search starts from the current directory and from this package's directory (so a
    checkout works from any cwd). Raises ``AnvilNotFoundError`` telling how to install it.
    """
    override = os.environ.get(ANVIL_ENV)
    if override:
        path = Path(override)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise AnvilNotFoundError(f"{ANVIL_ENV}={override} is not an executable file")
    roots = start_dirs if start_dirs is not None else [Path.cwd(), Path(__file__).resolve().parent]
    searched: list[str] = []
    for root in roots:
        for directory in (root.resolve(), *root.resolve().parents):
            candidate = directory / ANVIL_RELATIVE
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
        searched.append(str(root))
    raise AnvilNotFoundError(
        f"anvil not found: no {ANVIL_RELATIVE} above {', '.join(searched)}. Run `npm ci` in the "
        f"project root (package.json pins @foundry-rs/anvil), or set {ANVIL_ENV}."
    )


class AnvilProcess:
    """A running anvil on ``127.0.0.1`` with an OS-assigned port; use as a context manager.

    stdout/stderr are copied line by line into ``log_path`` by a reader thread (which also finds
    the ``Listening on`` line), so the pipe never fills up however chatty anvil is.
    """

    def __init__(
        self,
        log_path: Path,
        binary: Path | None = None,
        extra_args: tuple[str, ...] = (),
        start_timeout_s: float = START_TIMEOUT_S,
    ) -> None:
        self.log_path = log_path
        self.binary = binary
        self.extra_args = extra_args
        self.start_timeout_s = start_timeout_s
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._listening = threading.Event()

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self._require_port()}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self._require_port()}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _require_port(self) -> int:
        if self.port is None:
            raise DevnetError("anvil is not running")
        return self.port

    def start(self) -> AnvilProcess:
        binary = self.binary or find_anvil()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        args = [str(binary), "--host", "127.0.0.1", "--port", "0", "--chain-id", str(CHAIN_ID)]
        self._proc = subprocess.Popen(
            [*args, *self.extra_args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        log = self.log_path.open("wb")
        assert self._proc.stdout is not None
        self._reader = threading.Thread(
            target=self._pump, args=(self._proc.stdout, log), name="anvil-log", daemon=True
        )
        self._reader.start()
        if not self._listening.wait(self.start_timeout_s) or self.port is None:
            code = self._proc.poll()
            if code is None and not self._reader.is_alive():  # output ended: it is exiting
                try:
                    code = self._proc.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    code = None
            self.stop()
            state = f"exited with {code}" if code is not None else "did not start listening"
            raise DevnetError(
                f"anvil {state} within {self.start_timeout_s} s; log tail:\n{self.log_tail()}"
            )
        return self

    def _pump(self, stream: IO[bytes], log: IO[bytes]) -> None:
        with log:
            for line in iter(stream.readline, b""):
                log.write(line)
                log.flush()
                if self.port is None:
                    match = _LISTENING.search(line.decode(errors="replace"))
                    if match:
                        self.port = int(match["port"])
                        self._listening.set()
        self._listening.set()  # the process ended: wake a start() still waiting

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """Terminate (then kill after ``STOP_TIMEOUT_S``) and wait for the log to be flushed."""
        proc, self._proc = self._proc, None
        self.port = None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT_S)
        if self._reader is not None:
            self._reader.join(STOP_TIMEOUT_S)
            self._reader = None
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()

    def log_tail(self, max_lines: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no anvil log)"
        return "\n".join(lines[-max_lines:])

    def __enter__(self) -> AnvilProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
