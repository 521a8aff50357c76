"""Schema migrations: ``migrations/NNNN_name.sql`` applied in order, inside one transaction.

The folder is the project root's ``migrations/`` (next to the ``bot`` package), which is where it
is in a clone and in an editable install. A wheel would have to ship the SQL as package data at
``bot/_migrations/``; that location is tried second.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite

from bot.errors import DatabaseMismatchError
from bot.store.txn import write_transaction

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent

_CREATE_VERSIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL
)"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations_dir() -> Path:
    """Where the ``NNNN_name.sql`` files are (project root first, then package data)."""
    for candidate in (_PACKAGE_ROOT.parent / "migrations", _PACKAGE_ROOT / "_migrations"):
        if candidate.is_dir() and any(candidate.glob("*.sql")):
            return candidate
    expected = _PACKAGE_ROOT.parent / "migrations"
    raise FileNotFoundError(f"no migrations folder found next to the bot package ({expected})")


def load_migrations(folder: Path | None = None) -> list[Migration]:
    """Every migration file, sorted by version; versions must be 1..N without gaps."""
    folder = folder or migrations_dir()
    found: list[Migration] = []
    for path in sorted(folder.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise ValueError(f"migration file name must be NNNN_name.sql: {path.name}")
        found.append(Migration(int(match[1]), match[2], path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise ValueError(f"migration versions must be 1..N without gaps, found {versions}")
    return found


def latest_version(folder: Path | None = None) -> int:
    return load_migrations(folder)[-1].version


def split_statements(sql: str) -> list[str]:
    """Split a script into complete statements (``executescript`` would commit mid-transaction)."""
    statements: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        if line.strip().startswith("--") and not buffer.strip():
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(
        part.strip().startswith("--") or not part.strip() for part in buffer.splitlines()
    ):
        raise ValueError(f"incomplete SQL statement at the end of a migration: {buffer.strip()!r}")
    return statements


async def recorded_versions(conn: aiosqlite.Connection) -> list[int]:
    """Versions recorded in ``schema_migrations`` ([] on a new database)."""
    rows = await conn.execute_fetchall(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    )
    if not list(rows):
        return []
    rows = await conn.execute_fetchall("SELECT version FROM schema_migrations ORDER BY version")
    return [int(row[0]) for row in rows]


def check_not_newer(recorded: list[int], known: list[Migration]) -> None:
    newest_known = known[-1].version if known else 0
    if recorded and max(recorded) > newest_known:
        raise DatabaseMismatchError(
            f"the database was written by a newer version of the bot: it records schema versions "
            f"{recorded}, this version knows 1..{newest_known}; upgrade the bot"
        )


async def apply_migrations(conn: aiosqlite.Connection, folder: Path | None = None) -> list[int]:
    """Apply every unapplied migration in one transaction; return the versions applied.

    The connection must be in autocommit mode (``isolation_level=None``).
    """
    known = load_migrations(folder)
    async with write_transaction(conn):
        await conn.execute(_CREATE_VERSIONS)
        recorded = await recorded_versions(conn)
        check_not_newer(recorded, known)
        applied: list[int] = []
        now = datetime.now(UTC).isoformat()
        for migration in known:
            if migration.version in recorded:
                continue
            for statement in split_statements(migration.sql):
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, now),
            )
            applied.append(migration.version)
    return applied
