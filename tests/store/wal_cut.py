"""A SQLite write-ahead log cut back to an earlier point, as a power cut may leave it (tests only).

The WAL file (https://sqlite.org/fileformat2.html#walformat) is a 32-byte header (magic, format
version, page size at offset 8, checkpoint sequence, salt-1 and salt-2 at 16..24, checksum) and
then frames: a 24-byte header (page number; the database size in pages after the commit, non-zero
only on the last frame of a transaction; salt-1, salt-2; a cumulative checksum) and one page.
Opening the database replays the frames from the start while their salts and checksums hold, up to
the last commit frame: whatever follows it (a torn frame, a transaction short of its commit frame)
is ignored, so a WAL cut anywhere reads as the last transaction committed before the cut.

A copy keeps the database file and the cut WAL, never the ``-shm`` index: SQLite rebuilds it
from the WAL on open (the recovery a restart after a power cut runs).
"""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

WAL_HEADER = 32
FRAME_HEADER = 24
_MAGICS = (0x377F0682, 0x377F0683)


@dataclass(frozen=True, slots=True)
class Frame:
    index: int  # 0-based
    start: int  # offset of its header in the WAL file
    end: int  # offset just past its page
    db_pages: int  # the database size after the commit; 0 unless it ends a transaction

    @property
    def commit(self) -> bool:
        return self.db_pages != 0


@dataclass(frozen=True, slots=True)
class WalLayout:
    page_size: int
    frames: tuple[Frame, ...]

    @property
    def commits(self) -> list[Frame]:
        return [frame for frame in self.frames if frame.commit]

    def last_commit_before(self, cut: int) -> Frame | None:
        """The commit frame a WAL cut at byte ``cut`` is read up to (None: no transaction)."""
        whole = [frame for frame in self.commits if frame.end <= cut]
        return whole[-1] if whole else None


def read_layout(wal: bytes) -> WalLayout:
    """The frames of ``wal`` that belong to its current generation (same salts as the header)."""
    if len(wal) < WAL_HEADER or int.from_bytes(wal[0:4], "big") not in _MAGICS:
        raise ValueError("not a WAL file")
    page_size = int.from_bytes(wal[8:12], "big")
    page_size = 65536 if page_size == 1 else page_size
    salts = wal[16:24]
    frames: list[Frame] = []
    offset = WAL_HEADER
    while offset + FRAME_HEADER + page_size <= len(wal):
        header = wal[offset : offset + FRAME_HEADER]
        if header[8:16] != salts:  # a frame left over from an earlier generation
            break
        end = offset + FRAME_HEADER + page_size
        frames.append(Frame(len(frames), offset, end, int.from_bytes(header[4:8], "big")))
        offset = end
    return WalLayout(page_size, tuple(frames))


def cut_copy(db: Path, wal: bytes, cut: int, target: Path) -> Path:
    """``target`` (a database file path) holding ``db`` and the first ``cut`` bytes of ``wal``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(db, target)
    Path(f"{target}-wal").write_bytes(wal[:cut])
    Path(f"{target}-shm").unlink(missing_ok=True)
    return target


def open_copy(db: Path) -> sqlite3.Connection:
    """A connection that recovers the copy's WAL (write access is needed for that) and only
    reads; closing it folds the WAL into the file, so open a copy you will not restart from."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA query_only = ON")
    return conn
