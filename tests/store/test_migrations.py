"""Migrations, pragmas and the served-chain meta check, on real SQLite files."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from bot.errors import DatabaseMismatchError
from bot.store.connection import ServedChain, connect, open_database, open_readonly
from bot.store.migrations import (
    apply_migrations,
    latest_version,
    load_migrations,
    migrations_dir,
)

SERVED = ServedChain(
    chain_id=31337,
    orderbook="0x5FbDB2315678afecb367f032d93F642f64180aa3",
    order_owner="0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
    deployment_block=7,
)


def _versions(path: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(path) as conn:
        return [
            (int(v), str(n)) for v, n in conn.execute("SELECT version, name FROM schema_migrations")
        ]


async def test_applied_once_recorded_and_reopen_is_a_no_op(db_path: Path) -> None:
    conn, meta = await open_database(db_path, SERVED)
    await conn.close()
    known = [(m.version, m.name) for m in load_migrations()]
    assert known[0] == (1, "initial")
    assert _versions(db_path) == known
    assert latest_version() == len(known)
    assert migrations_dir().name == "migrations"
    assert re.fullmatch(r"[0-9a-f]{16}", meta.instance_id)
    assert meta.served == SERVED

    conn = await connect(db_path)
    try:
        assert await apply_migrations(conn) == []
    finally:
        await conn.close()
    conn, again = await open_database(db_path, SERVED)
    await conn.close()
    assert again.instance_id == meta.instance_id  # written once, at creation
    assert _versions(db_path) == known


async def test_pragmas_wal_full_foreign_keys(db_path: Path) -> None:
    conn, _ = await open_database(db_path, SERVED)
    try:
        rows = {
            pragma: next(iter(await conn.execute_fetchall(f"PRAGMA {pragma}")))[0]
            for pragma in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        }
    finally:
        await conn.close()
    assert rows == {
        "journal_mode": "wal",
        "synchronous": 2,
        "foreign_keys": 1,
        "busy_timeout": 5000,
    }


async def test_newer_recorded_version_is_refused(db_path: Path) -> None:
    conn, _ = await open_database(db_path, SERVED)
    await conn.close()
    with sqlite3.connect(db_path) as raw:
        raw.execute("INSERT INTO schema_migrations VALUES (999, 'future', 'later')")
    newest = latest_version()
    with pytest.raises(DatabaseMismatchError, match=rf"versions \[1, .*999\].*knows 1\.\.{newest}"):
        await open_database(db_path, SERVED)
    with pytest.raises(DatabaseMismatchError, match=r"newer version"):
        open_readonly(db_path)


@pytest.mark.parametrize(
    ("field", "value", "stored"),
    [
        ("chain_id", 1, "31337"),
        ("orderbook", "0x0000000000000000000000000000000000000001", SERVED.orderbook),
        ("order_owner", "0x0000000000000000000000000000000000000002", SERVED.order_owner),
        ("deployment_block", 8, "7"),
    ],
)
async def test_meta_mismatch_is_refused_naming_the_field(
    db_path: Path, field: str, value: object, stored: str
) -> None:
    conn, _ = await open_database(db_path, SERVED)
    await conn.close()
    other = _with(field, value)
    with pytest.raises(DatabaseMismatchError) as caught:
        await open_database(db_path, other)
    message = str(caught.value)
    assert f"serves {field}={stored!r}" in message
    assert f"config says {field}={str(value)!r}" in message


def _with(field: str, value: object) -> ServedChain:
    values = {
        "chain_id": SERVED.chain_id,
        "orderbook": SERVED.orderbook,
        "order_owner": SERVED.order_owner,
        "deployment_block": SERVED.deployment_block,
    }
    values[field] = value
    return ServedChain(**values)  # type: ignore[arg-type]


async def test_address_case_does_not_matter(db_path: Path) -> None:
    conn, _ = await open_database(db_path, SERVED)
    await conn.close()
    lower = _with("orderbook", SERVED.orderbook.lower())
    conn, meta = await open_database(db_path, lower)
    await conn.close()
    assert meta.served.orderbook == SERVED.orderbook


async def test_a_failing_migration_rolls_back_entirely(db_path: Path, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_one.sql").write_text("CREATE TABLE a (x INTEGER);\n")
    (folder / "0002_two.sql").write_text("CREATE TABLE b (x INTEGER);\nTHIS IS NOT SQL;\n")
    conn = await connect(db_path)
    try:
        with pytest.raises(sqlite3.OperationalError):
            await apply_migrations(conn, folder)
        tables = {
            str(r[0])
            for r in await conn.execute_fetchall(
                "SELECT name FROM sqlite_master WHERE type='table'"
            )
        }
    finally:
        await conn.close()
    assert "a" not in tables and "b" not in tables  # one transaction: nothing half-applied


async def test_readonly_refuses_a_missing_or_unmigrated_database(db_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_readonly(db_path)
    sqlite3.connect(db_path).close()
    with pytest.raises(DatabaseMismatchError, match="run `bot run` or `bot backfill`"):
        open_readonly(db_path)
