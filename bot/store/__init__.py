"""SQLite persistence (aiosqlite, WAL): migrations, the event queue, the ledger, the lock."""
