"""The doctor's local checks (SPEC §10): the database, free disk space, secrets in the config file.

The doctor takes no instance lock and writes nothing to the database: it opens it read-only
(``mode=ro``), and tests that its folder is writable with a temporary file it removes at once
(SQLite writes ``-wal``/``-shm`` files and ``run`` its ``.lock`` file there). A database that does
not exist yet is fine: ``run`` creates it, so only its folder must be writable.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from bot.config import LoadedConfig, Settings, redact_url
from bot.doctor.model import CheckResult, failed, passed
from bot.store.migrations import load_migrations

MIN_FREE_BYTES = 256 * 1024 * 1024

_ADDRESS_FIELDS = ("orderbook", "order_owner")


def folder_write_problem(folder: Path) -> str | None:
    """Why a file cannot be created in ``folder`` (None: it can). The probe file is removed."""
    try:
        handle, probe = tempfile.mkstemp(prefix=".bot-doctor-", dir=folder)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(handle)
    os.unlink(probe)
    return None


def _configured(settings: Settings, chain_id: int | None) -> dict[str, str]:
    """What the database must record (SPEC §8); the chain id only when a provider told it."""
    served = {
        "orderbook": settings.orderbook.address,
        "order_owner": settings.orderbook.order_owner,
        "deployment_block": str(settings.orderbook.deployment_block),
    }
    return served if chain_id is None else {"chain_id": str(chain_id), **served}


def _same(field: str, stored: str, configured: str) -> bool:
    if field in _ADDRESS_FIELDS:
        return stored.lower() == configured.lower()
    return stored == configured


def _has_table(conn: sqlite3.Connection, table: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    return row is not None


def open_for_reading(path: Path) -> sqlite3.Connection:
    """A read-only connection that leaves no file behind.

    A read-only connection to a WAL database creates its ``-wal``/``-shm`` files when they are
    missing and cannot remove them. They are missing only when no connection has the database
    open and its WAL is checkpointed: then the file alone is the whole database, and it is
    opened ``immutable`` (no side files, no locks). Otherwise (``run`` may be writing) ``mode=ro``
    reads through the existing WAL like any reader.
    """
    side_files = (path.with_name(path.name + suffix) for suffix in ("-wal", "-shm"))
    flags = "mode=ro" if any(p.exists() for p in side_files) else "mode=ro&immutable=1"
    return sqlite3.connect(f"{path.resolve().as_uri()}?{flags}", uri=True)


def traded_tickers(path: Path) -> list[str]:
    """The tickers the database holds positions for (best effort: [] when it cannot tell)."""
    if not path.is_file():
        return []
    try:
        conn = open_for_reading(path)
        try:
            if not _has_table(conn, "positions"):
                return []
            return [str(r[0]) for r in conn.execute("SELECT ticker FROM positions ORDER BY 1")]
        finally:
            conn.close()
    except sqlite3.Error:
        return []


def database_check(loaded: LoadedConfig, chain_id: int | None) -> CheckResult:
    """Writable, migrated (or migratable by this version) and serving the configured chain."""
    name = "database"
    path = loaded.database_path
    folder = path.parent
    elsewhere = "set database.path to a writable place"
    if not path.exists():
        problem = folder_write_problem(folder)
        if problem is not None:
            return failed(
                name,
                f"no database at {path} yet and its folder {folder} is not writable: {problem}",
                f"create {folder} as a folder this user may write, or {elsewhere}",
            )
        return passed(name, f"new database will be created at {path} (folder writable)")
    if not path.is_file():
        return failed(name, f"{path} is not a file", f"remove it, or {elsewhere}")
    problem = folder_write_problem(folder)
    if problem is None and not os.access(path, os.R_OK | os.W_OK):
        problem = "the file is not readable and writable by this user"
    if problem is not None:
        return failed(
            name,
            f"{path} cannot be written: {problem}",
            f"give this user write access to {path} and its folder, or {elsewhere}",
        )
    try:
        conn = open_for_reading(path)
        try:
            return _schema_and_meta(conn, loaded, chain_id)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return failed(
            name,
            f"{path} cannot be read as a SQLite database: {exc}",
            f"restore it from a backup, or {elsewhere}",
        )


def _schema_and_meta(
    conn: sqlite3.Connection, loaded: LoadedConfig, chain_id: int | None
) -> CheckResult:
    name = "database"
    path = loaded.database_path
    known = [m.version for m in load_migrations()]
    recorded = (
        [int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
        if _has_table(conn, "schema_migrations")
        else []
    )
    if recorded and max(recorded) > known[-1]:
        return failed(
            name,
            f"{path} was written by a newer version of the bot (schema {recorded}, "
            f"this version knows 1..{known[-1]})",
            "upgrade the bot, or point database.path at another database",
        )
    if recorded != known[: len(recorded)]:
        return failed(
            name,
            f"{path} records schema versions {recorded}, not a prefix of 1..{known[-1]}",
            "restore it from a backup, or point database.path at another database",
        )
    schema = (
        f"schema 1..{known[-1]}"
        if recorded == known
        else (f"schema {recorded or 'none'}; `run` migrates it to 1..{known[-1]} at start")
    )
    stored: dict[str, str] = {}
    if _has_table(conn, "meta"):
        stored = {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM meta")}
    if not stored:
        return passed(name, f"{path}: {schema}; records no chain yet (`run` records it)")
    configured = _configured(loaded.settings, chain_id)
    wrong = [
        field
        for field, value in configured.items()
        if field not in stored or not _same(field, stored[field], value)
    ]
    if wrong:
        serves = ", ".join(f"{f}={stored.get(f)}" for f in wrong)
        says = ", ".join(f"{f}={configured[f]}" for f in wrong)
        return failed(
            name,
            f"{path} serves {serves} but the config (and providers) say {says}",
            "point database.path at this chain's database (or a new path), or fix the config",
        )
    unchecked = "" if chain_id is not None else " (chain id not checked: no provider answered)"
    return passed(
        name,
        f"{path}: {schema}, writable, serves chain {stored.get('chain_id')} orderbook "
        f"{stored.get('orderbook')}{unchecked}",
    )


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path.cwd()


def _size_text(size: int) -> str:
    amount = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024:
            return f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} TiB"


def disk_check(database_path: Path) -> CheckResult:
    """At least 256 MiB free, and as much as the database already uses (a WAL can grow that far
    before a checkpoint, and a full disk stops every commit)."""
    name = "disk"
    where = _nearest_existing(database_path.parent)
    free = shutil.disk_usage(where).free
    current = database_path.stat().st_size if database_path.is_file() else 0
    needed = max(MIN_FREE_BYTES, current)
    detail = f"{_size_text(free)} free on the database's file system ({where})"
    if free < needed:
        return failed(
            name,
            f"only {detail}; at least {_size_text(needed)} needed",
            "free space on that disk, or move database.path to a larger one",
        )
    return passed(name, detail)


def _secrets_in_file(data: dict[str, Any]) -> list[str]:
    """The keys of the raw file (environment overrides excluded) that hold a secret.

    Secrets: the Alpaca keys, the API token, the alert webhook (such URLs carry a token), and
    provider URLs with credentials in them (what ``redact_url`` would hide).
    """

    def value(*path: str) -> Any:
        node: Any = data
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        return node

    found = [
        ".".join(path)
        for path in (
            ("broker", "alpaca", "api_key_id"),
            ("broker", "alpaca", "api_secret"),
            ("metrics", "token"),
            ("alerts", "webhook_url"),
        )
        if isinstance(value(*path), str) and value(*path)
    ]
    for key in ("ws_url", "http_url"):
        url = value("chain", key)
        if isinstance(url, str) and url and redact_url(url) != url:
            found.append(f"chain.{key}")
    fallbacks = value("chain", "fallback_urls")
    if isinstance(fallbacks, list):
        found += [
            f"chain.fallback_urls[{i}]"
            for i, url in enumerate(fallbacks)
            if isinstance(url, str) and redact_url(url) != url
        ]
    return found


def _env_names(keys: list[str]) -> list[str]:
    """``broker.alpaca.api_secret`` → ``BOT__BROKER__ALPACA__API_SECRET`` (a list as a whole)."""
    names = ["BOT__" + "__".join(key.split("[")[0].upper().split(".")) for key in keys]
    return list(dict.fromkeys(names))


def secrets_check(config_path: Path) -> CheckResult:
    """No secret in a config file that other users can read (group or others read bit)."""
    name = "secrets"
    try:
        data = tomllib.loads(config_path.read_text(encoding="utf-8"))
        mode = stat.S_IMODE(config_path.stat().st_mode)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        return failed(name, f"cannot read {config_path}: {exc}", "see the config check")
    secrets = _secrets_in_file(data)
    if not secrets:
        return passed(name, f"{config_path} holds no secret")
    if mode & 0o044:
        return failed(
            name,
            f"{config_path} (mode {mode:04o}) holds {', '.join(secrets)} and other users "
            "can read it",
            f"chmod 600 {config_path}, or remove them from the file and pass them by "
            f"environment ({', '.join(_env_names(secrets))})",
        )
    return passed(
        name,
        f"{config_path} holds {', '.join(secrets)}; only its owner may read it (mode {mode:04o})",
    )
